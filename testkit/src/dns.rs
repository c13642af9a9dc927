//! The test cluster's DNS: A records for `SERVICE.NAMESPACE.svc.DOMAIN` and, for headless
//! Services, `HOSTNAME.SERVICE.NAMESPACE.svc.DOMAIN` of each pod that names the Service as its
//! subdomain — read from the Services and EndpointSlices the API server holds (watched, so
//! answers follow pods as they come and go), and served with hickory-server.
//!
//! As in a cluster's own DNS, a headless Service's endpoints count when they are ready, or
//! always when the Service publishes not-ready addresses. Names outside the cluster's domain
//! get NXDOMAIN: the pods of these tests talk only to each other and the API server.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record, RecordType, rdata::A};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};

use crate::error::{Error, Result, io};

/// Fully qualified names (lower case, no trailing dot) and their addresses.
pub type Records = HashMap<String, Vec<Ipv4Addr>>;

const TTL: u32 = 5;

/// The records that `services` and their `slices` give, under `domain`.
pub fn records(services: &[Service], slices: &[EndpointSlice], domain: &str) -> Records {
    let mut out = Records::new();
    for svc in services {
        let (Some(ns), name) = (svc.namespace(), svc.name_any()) else {
            continue;
        };
        let spec = svc.spec.clone().unwrap_or_default();
        let fqdn = format!("{name}.{ns}.svc.{domain}");
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if !headless {
            if let Some(ip) = spec.cluster_ip.as_deref().and_then(|i| i.parse().ok()) {
                out.insert(fqdn, vec![ip]);
            }
            continue;
        }
        let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
        let mut all = Vec::new();
        let owned = slices.iter().filter(|s| {
            s.namespace().as_deref() == Some(ns.as_str())
                && s.labels().get("kubernetes.io/service-name") == Some(&name)
                && s.address_type == "IPv4"
        });
        for slice in owned {
            for ep in slice.endpoints.iter().flatten() {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                if !(ready || publish_not_ready) {
                    continue;
                }
                let ips: Vec<Ipv4Addr> =
                    ep.addresses.iter().filter_map(|a| a.parse().ok()).collect();
                if let Some(host) = &ep.hostname {
                    out.entry(format!("{host}.{fqdn}"))
                        .or_default()
                        .extend(ips.iter().copied());
                }
                all.extend(ips);
            }
        }
        all.sort();
        all.dedup();
        out.insert(fqdn, all);
    }
    out
}

/// Answers A queries from the records it is given.
struct Handler {
    records: Arc<RwLock<Records>>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(true);
        header.set_recursion_available(false);
        let answers: Vec<Record> = match request.request_info() {
            Ok(info)
                if request.message_type() == MessageType::Query
                    && request.op_code() == OpCode::Query =>
            {
                let qname = info.query.name().to_string();
                let key = qname.trim_end_matches('.').to_ascii_lowercase();
                let found = self
                    .records
                    .read()
                    .expect("records lock")
                    .get(&key)
                    .cloned();
                match found {
                    None => {
                        header.set_response_code(ResponseCode::NXDomain);
                        Vec::new()
                    }
                    // AAAA and other types of a known name: no data, not an error.
                    Some(_) if info.query.query_type() != RecordType::A => Vec::new(),
                    Some(ips) => {
                        let owner = Name::from(info.query.name().clone());
                        ips.into_iter()
                            .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(ip))))
                            .collect()
                    }
                }
            }
            _ => {
                header.set_response_code(ResponseCode::NotImp);
                Vec::new()
            }
        };
        let msg = MessageResponseBuilder::from_message_request(request).build(
            header,
            answers.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response.send_response(msg).await {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!("dns: could not answer: {e}");
                let mut h = Header::new();
                h.set_response_code(ResponseCode::ServFail);
                h.into()
            }
        }
    }
}

/// Serves the cluster's names on `listen` (UDP and TCP) until the process is stopped.
pub async fn serve(client: kube::Client, listen: SocketAddr, domain: &str) -> Result<()> {
    let shared = Arc::new(RwLock::new(Records::new()));

    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (eps_store, eps_writer) = reflector::store::<EndpointSlice>();
    let services = reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let slices = reflector(
        eps_writer,
        watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let keep = shared.clone();
    let domain = domain.to_string();
    let updates = futures::stream::select(services, slices).for_each(move |()| {
        let svcs: Vec<Service> = svc_store.state().iter().map(|s| (**s).clone()).collect();
        let eps: Vec<EndpointSlice> = eps_store.state().iter().map(|s| (**s).clone()).collect();
        *keep.write().expect("records lock") = records(&svcs, &eps, &domain);
        futures::future::ready(())
    });

    let mut server = hickory_server::ServerFuture::new(Handler { records: shared });
    let udp = tokio::net::UdpSocket::bind(listen)
        .await
        .map_err(io(format!("binding DNS to udp {listen}")))?;
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(io(format!("binding DNS to tcp {listen}")))?;
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    tracing::info!("dns: serving on {listen}");
    tokio::select! {
        () = updates => Err(Error::Kubeconfig("the watches ended".into())),
        r = server.block_until_done() => r.map_err(|e| Error::Command {
            command: "dns server".into(),
            detail: e.to_string(),
        }),
    }
}

/// Asks `server` (port 53, UDP) for the A records of `name`.
pub async fn query_a(server: Ipv4Addr, name: &str) -> Result<Vec<Ipv4Addr>> {
    let bad = |detail: String| Error::Command {
        command: format!("DNS query for {name}"),
        detail,
    };
    let mut msg = Message::new();
    msg.set_id(fastrand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_ascii(format!("{name}.")).map_err(|e| bad(e.to_string()))?,
            RecordType::A,
        ));
    let bytes = msg.to_vec().map_err(|e| bad(e.to_string()))?;
    let sock = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(io("binding a DNS client socket"))?;
    sock.send_to(&bytes, (server, 53))
        .await
        .map_err(io("sending a DNS query"))?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .map_err(|_| bad("no answer within 2 s".into()))?
        .map_err(io("reading a DNS answer"))?;
    let reply = Message::from_vec(&buf[..n]).map_err(|e| bad(e.to_string()))?;
    Ok(reply
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect())
}

fn fastrand_id() -> u16 {
    // Any id will do for one query on its own socket.
    (std::process::id() & 0xffff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(name: &str, headless: bool, publish: bool) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(if headless {
                    "None".into()
                } else {
                    "10.219.0.9".into()
                }),
                publish_not_ready_addresses: Some(publish),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(svc: &str, eps: &[(&str, &str, bool)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{svc}-abc")),
                namespace: Some("default".into()),
                labels: Some([("kubernetes.io/service-name".to_string(), svc.to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(
                eps.iter()
                    .map(|(host, ip, ready)| Endpoint {
                        addresses: vec![ip.to_string()],
                        hostname: Some(host.to_string()),
                        conditions: Some(EndpointConditions {
                            ready: Some(*ready),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: None,
        }
    }

    #[test]
    fn headless_services_name_their_pods() {
        let r = records(
            &[svc("flux-service", true, true), svc("web", false, false)],
            &[slice(
                "flux-service",
                &[("mc-0", "10.218.1.2", false), ("mc-1", "10.218.1.3", true)],
            )],
            "cluster.local",
        );
        assert_eq!(
            r["mc-0.flux-service.default.svc.cluster.local"],
            ["10.218.1.2".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(r["flux-service.default.svc.cluster.local"].len(), 2);
        assert_eq!(
            r["web.default.svc.cluster.local"],
            ["10.219.0.9".parse::<Ipv4Addr>().unwrap()]
        );
    }

    #[test]
    fn not_ready_pods_count_only_when_published() {
        let r = records(
            &[svc("s", true, false)],
            &[slice(
                "s",
                &[("a", "10.218.1.2", false), ("b", "10.218.1.3", true)],
            )],
            "cluster.local",
        );
        assert!(!r.contains_key("a.s.default.svc.cluster.local"));
        assert!(r.contains_key("b.s.default.svc.cluster.local"));
    }

    #[test]
    fn slices_of_other_services_or_namespaces_do_not_mix() {
        let mut other = slice("s", &[("a", "10.218.1.2", true)]);
        other.metadata.namespace = Some("elsewhere".into());
        let r = records(&[svc("s", true, true)], &[other], "cluster.local");
        assert!(r["s.default.svc.cluster.local"].is_empty());
    }
}
