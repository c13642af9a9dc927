//! The Docker launcher: N containers on a network made for the MiniCluster, each named and
//! aliased `<name>-<i>` so brokers resolve each other as in Kubernetes. Our entrypoint, the
//! cluster description and the certificate (0400) are copied into each container before it
//! starts — never passed in an environment variable or on a command line. Labels find
//! everything again for `down`, also after the CLI was killed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use minicluster_core::{ClusterDescription, CurveCert, DescribeOptions, MiniCluster, describe};

use crate::error::{Error, Result};
use crate::state::{self, Record};

/// Label that marks everything a launch made, valued with the MiniCluster's name.
pub const LABEL: &str = "flux-framework.org/minicluster";
/// Directory in each container holding what we copy in.
pub const INSIDE: &str = "/.minicluster";

/// Engine requests (container creates, copies, starts) a launch keeps in flight at once.
const AT_ONCE: usize = 8;

pub struct DockerLauncher {
    pub docker: Docker,
    pub root: PathBuf,
    /// Our entrypoint binary, copied into every container.
    pub entrypoint: PathBuf,
    /// `flux` inside the image, when it is not on the image's PATH.
    pub flux: Option<String>,
}

/// The Docker Engine's address: `host`, else `$DOCKER_HOST`, else the local socket.
pub fn engine_address(host: Option<&str>) -> String {
    host.map(str::to_string)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// A client of the Docker Engine at [`engine_address`]`(host)` (`unix://`, `tcp://` or
/// `http://`); nothing is sent until it is used.
pub fn client(host: Option<&str>) -> Result<Docker> {
    let where_ = engine_address(host);
    Docker::connect_with_host(&where_).map_err(|e| {
        setup(
            &format!("the Docker Engine at {where_}"),
            e,
            "start Docker, or set DOCKER_HOST",
        )
    })
}

/// One container of a MiniCluster, as the container list shows it.
#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub rank: u32,
    /// `created`, `running`, `paused`, `restarting`, `exited`, `removing` or `dead`.
    pub status: String,
    pub labels: HashMap<String, String>,
}

/// What Docker recorded of a container's process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessState {
    /// Whether it was ever started (`State.StartedAt` is set).
    pub started: bool,
    pub running: bool,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// Docker's error, when it could not start or run it.
    pub error: String,
}

fn setup(what: &str, e: impl std::fmt::Display, fix: &str) -> Error {
    Error::Setup {
        what: what.into(),
        reason: e.to_string(),
        fix: fix.into(),
    }
}

impl DockerLauncher {
    /// Connects to the Docker Engine (`DOCKER_HOST`, else the local socket) and checks it answers.
    pub async fn connect(root: PathBuf, entrypoint: PathBuf, flux: Option<String>) -> Result<Self> {
        let where_ = engine_address(None);
        let docker = client(None)?;
        docker.ping().await.map_err(|e| {
            setup(
                &format!("the Docker Engine at {where_}"),
                e,
                "start Docker, or set DOCKER_HOST",
            )
        })?;
        Ok(DockerLauncher {
            docker,
            root,
            entrypoint,
            flux,
        })
    }

    fn filter(name: &str) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_string(), vec![format!("{LABEL}={name}")])])
    }

    /// The containers of MiniCluster `name`: id, state, rank.
    async fn containers(&self, name: &str) -> Result<Vec<(String, String, u32)>> {
        Ok(self
            .containers_of(name)
            .await?
            .into_iter()
            .map(|c| (c.id, c.status, c.rank))
            .collect())
    }

    /// Every container of MiniCluster `name` (stopped ones too), with its labels.
    pub async fn containers_of(&self, name: &str) -> Result<Vec<Container>> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(Self::filter(name)),
                ..Default::default()
            }))
            .await
            .map_err(|e| setup("listing containers", e, "check that Docker runs"))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                let rank = labels
                    .get(&format!("{LABEL}.rank"))
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                Container {
                    id: c.id.unwrap_or_default(),
                    rank,
                    status: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    labels,
                }
            })
            .collect())
    }

    /// What Docker recorded of container `id`'s process (inspect's `State`).
    pub async fn process_state(&self, id: &str) -> Result<ProcessState> {
        let i = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| {
                setup(
                    &format!("inspecting container {id}"),
                    e,
                    "check that Docker runs",
                )
            })?;
        let s = i.state.unwrap_or_default();
        // A container never started has the zero time (0001-01-01T00:00:00Z) here.
        let started = s
            .started_at
            .as_deref()
            .is_some_and(|t| !t.is_empty() && !t.starts_with("0001-"));
        Ok(ProcessState {
            started,
            running: s.running.unwrap_or(false),
            exit_code: s.exit_code.unwrap_or(0),
            oom_killed: s.oom_killed.unwrap_or(false),
            error: s.error.unwrap_or_default(),
        })
    }

    /// The names of the MiniClusters whose containers or networks carry our label (and
    /// `also`, a further `key=value` label, when given).
    pub async fn names(&self, also: Option<&str>) -> Result<BTreeSet<String>> {
        let mut labels = vec![LABEL.to_string()];
        labels.extend(also.map(str::to_string));
        let filters = HashMap::from([("label".to_string(), labels)]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .map_err(|e| setup("listing containers", e, "check that Docker runs"))?;
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| setup("listing networks", e, "check that Docker runs"))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| c.labels)
            .chain(networks.into_iter().filter_map(|n| n.labels))
            .filter_map(|mut l| l.remove(LABEL))
            .collect())
    }

    /// Creates the network and the containers, copies the files in and starts them.
    /// The image is the Flux container's of the spec.
    pub async fn launch(&self, mc: &MiniCluster) -> Result<Record> {
        self.launch_labelled(mc, &HashMap::new()).await
    }

    /// [`launch`](Self::launch), with `extra` labels on the network and every container.
    pub async fn launch_labelled(
        &self,
        mc: &MiniCluster,
        extra: &HashMap<String, String>,
    ) -> Result<Record> {
        let name = mc.metadata.name.clone().unwrap_or_default();
        let image = mc.spec.containers[mc.spec.flux_container_index().unwrap_or(0)]
            .image
            .clone();
        let image = image.as_str();
        if !self.containers(&name).await?.is_empty() {
            return Err(Error::NameTaken {
                name,
                launcher: "docker".into(),
            });
        }
        let mut d = describe(mc, &DescribeOptions::default())?;
        // Containers on one network reach each other by name.
        d.network.connect = "tcp://%h:%p".into();
        let cert = CurveCert::for_minicluster(mc)?;
        let archive = files_archive(&self.entrypoint, &d.to_json(), &cert.to_text())?;
        let network = format!("mc-{name}");
        let mut labels = extra.clone();
        labels.insert(LABEL.to_string(), name.clone());

        let _ = std::fs::remove_dir_all(state::dir(&self.root, &name));
        state::create_dir(&self.root, &name)?;
        let mut record = Record {
            name: name.clone(),
            launcher: "docker".into(),
            size: d.size,
            persistent: mc.spec.interactive,
            created: state::now(),
            pids: Vec::new(),
            flux_uri: None,
            resources: vec![network.clone()],
        };
        record.save(&self.root)?;

        let result = async {
            self.docker
                .create_network(NetworkCreateRequest {
                    name: network.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    setup(
                        &format!("creating network {network}"),
                        e,
                        "remove a network of that name, or pick another --name",
                    )
                })?;
            // The spec's environment (its PATH may say where Flux is), and FLUX_URI so that
            // `docker exec NAME-0 flux …` reaches the instance. The image's own Env (its PATH)
            // stays: Docker adds these to it.
            let env: Vec<String> = d
                .environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .chain([format!("FLUX_URI=local://{}/local", d.paths.rundir)])
                .collect();
            // Several at once: each create, copy and start is a round trip through the
            // Engine (about half a second here for a create), which serves them side by side.
            let mut created = futures::stream::iter(0..d.size)
                .map(|rank| self.create_rank(&d, rank, image, &network, &labels, &env, &archive))
                .buffer_unordered(AT_ONCE);
            let mut first_error = None;
            // Every request is seen to its end, also after a failure: one still on its way
            // could otherwise create a container after `down` has looked.
            while let Some(made) = created.next().await {
                let saved = made.and_then(|host| {
                    record.resources.push(host);
                    record.save(&self.root)
                });
                if let Err(e) = saved {
                    first_error.get_or_insert(e);
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            // Workers first, rank 0 last: it finds the others already resolving.
            let started: Vec<Result<()>> = futures::stream::iter((1..d.size).rev())
                .map(|rank| self.start_rank(&d, rank))
                .buffer_unordered(AT_ONCE)
                .collect()
                .await;
            started.into_iter().collect::<Result<()>>()?;
            self.start_rank(&d, 0).await?;
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = result {
            let _ = self.down(&name).await;
            return Err(e);
        }
        Ok(record)
    }

    /// Creates rank `rank`'s container and copies our files into it; its name.
    #[allow(clippy::too_many_arguments)]
    async fn create_rank(
        &self,
        d: &ClusterDescription,
        rank: u32,
        image: &str,
        network: &str,
        labels: &HashMap<String, String>,
        env: &[String],
        archive: &[u8],
    ) -> Result<String> {
        let host = d.hostname(rank);
        let mut cmd = vec![
            format!("{INSIDE}/entrypoint"),
            "--description".into(),
            format!("{INSIDE}/description.json"),
            "--cert".into(),
            format!("{INSIDE}/curve.cert"),
            "--rank".into(),
            rank.to_string(),
        ];
        if let Some(f) = &self.flux {
            cmd.extend(["--flux".into(), f.clone()]);
        }
        let mut l = labels.clone();
        l.insert(format!("{LABEL}.rank"), rank.to_string());
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(host.clone()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(image.into()),
                    hostname: Some(host.clone()),
                    entrypoint: Some(cmd),
                    cmd: Some(Vec::new()),
                    env: Some(env.to_vec()),
                    labels: Some(l),
                    host_config: Some(HostConfig {
                        network_mode: Some(network.into()),
                        init: Some(false),
                        ..Default::default()
                    }),
                    networking_config: Some(NetworkingConfig {
                        endpoints_config: Some(HashMap::from([(
                            network.to_string(),
                            EndpointSettings {
                                aliases: Some(vec![host.clone()]),
                                ..Default::default()
                            },
                        )])),
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                setup(
                    &format!("creating container {host}"),
                    e,
                    "check that the image exists locally (docker images)",
                )
            })?;
        self.docker
            .upload_to_container(
                &host,
                Some(UploadToContainerOptions {
                    path: "/".into(),
                    ..Default::default()
                }),
                bollard::body_full(archive.to_vec().into()),
            )
            .await
            .map_err(|e| {
                setup(
                    &format!("copying files into {host}"),
                    e,
                    "use an image with a writable root filesystem",
                )
            })?;
        Ok(host)
    }

    /// Starts rank `rank`'s container.
    async fn start_rank(&self, d: &ClusterDescription, rank: u32) -> Result<()> {
        let host = d.hostname(rank);
        self.docker
            .start_container(&host, None::<StartContainerOptions>)
            .await
            .map_err(|e| setup(&format!("starting {host}"), e, "see `docker logs` of it"))
    }

    /// Streams rank 0's output to ours until it exits; returns its exit code.
    pub async fn follow_rank0(&self, name: &str) -> Result<i32> {
        // A broken log stream must not lose the exit code: report it and wait regardless.
        if let Err(e) = self.logs(name, 0, true).await {
            tracing::debug!("{e}");
        }
        self.wait(&format!("{name}-0")).await
    }

    /// Copies a broker's output to ours (`follow` keeps going until it stops).
    pub async fn logs(&self, name: &str, rank: u32, follow: bool) -> Result<()> {
        use std::io::Write;
        let host = format!("{name}-{rank}");
        let mut logs = self.docker.logs(
            &host,
            Some(LogsOptions {
                follow,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        while let Some(item) = logs.next().await {
            match item {
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    let _ = std::io::stderr().write_all(&message);
                }
                Ok(other) => {
                    let _ = std::io::stdout().write_all(&other.into_bytes());
                }
                Err(e) => {
                    return Err(setup(
                        &format!("reading the log of {host}"),
                        e,
                        "check that it exists (minicluster status)",
                    ));
                }
            }
        }
        Ok(())
    }

    async fn wait(&self, container: &str) -> Result<i32> {
        let mut w = self.docker.wait_container(
            container,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        match w.next().await {
            Some(Ok(r)) => Ok(i32::try_from(r.status_code).unwrap_or(1)),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => {
                Ok(i32::try_from(code).unwrap_or(1))
            }
            Some(Err(e)) => Err(setup(
                &format!("waiting for {container}"),
                e,
                "check that Docker runs",
            )),
            None => Ok(1),
        }
    }

    /// Asks rank 0 to stop (SIGTERM, which shuts the instance down).
    pub async fn stop(&self, name: &str) {
        self.signal(name, "SIGTERM").await;
    }

    /// Sends `signal` (`SIGTERM`, `SIGKILL`…) to rank 0's container.
    pub async fn signal(&self, name: &str, signal: &str) {
        let _ = self
            .docker
            .kill_container(
                &format!("{name}-0"),
                Some(KillContainerOptions {
                    signal: signal.into(),
                }),
            )
            .await;
    }

    /// Writes a broker's output so far (stdout and stderr as Docker interleaved them) to
    /// `out`, from byte `offset` on and at most `limit` bytes; never waits for more. How many
    /// bytes were written.
    pub async fn copy_log(
        &self,
        name: &str,
        rank: u32,
        offset: u64,
        limit: Option<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let host = format!("{name}-{rank}");
        let failed = |e: &dyn std::fmt::Display| {
            setup(
                &format!("reading the log of {host}"),
                e,
                "check that it exists (minicluster status)",
            )
        };
        let mut logs = self.docker.logs(
            &host,
            Some(LogsOptions {
                follow: false,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let (mut seen, mut written) = (0u64, 0u64);
        while let Some(item) = logs.next().await {
            let bytes = item.map_err(|e| failed(&e))?.into_bytes();
            let len = bytes.len() as u64;
            let from = offset.saturating_sub(seen).min(len);
            seen += len;
            let mut chunk = &bytes[from as usize..];
            if let Some(l) = limit {
                chunk = &chunk[..chunk.len().min((l - written) as usize)];
            }
            out.write_all(chunk).map_err(|e| failed(&e))?;
            written += chunk.len() as u64;
            if limit.is_some_and(|l| written >= l) {
                break;
            }
        }
        Ok(written)
    }

    /// Removes every container and the network of MiniCluster `name`; how many containers
    /// were removed.
    pub async fn down(&self, name: &str) -> Result<usize> {
        self.down_labelled(name, None).await
    }

    /// [`down`](Self::down), of only the containers and networks that also carry the label
    /// `also` (`key=value`): what one owner made, never another's of the same name.
    pub async fn down_labelled(&self, name: &str, also: Option<&str>) -> Result<usize> {
        let mut filter = Self::filter(name);
        if let Some(a) = also {
            filter
                .entry("label".to_string())
                .or_default()
                .push(a.to_string());
        }
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filter.clone()),
                ..Default::default()
            }))
            .await
            .map_err(|e| setup("listing containers", e, "check that Docker runs"))?;
        for id in containers.iter().filter_map(|c| c.id.as_deref()) {
            self.docker
                .remove_container(
                    id,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|e| setup(&format!("removing container {id}"), e, "docker rm -f it"))?;
        }
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filter),
            }))
            .await
            .map_err(|e| setup("listing networks", e, "check that Docker runs"))?;
        for n in networks {
            if let Some(id) = n.id {
                self.docker.remove_network(&id).await.map_err(|e| {
                    setup(&format!("removing network {id}"), e, "docker network rm it")
                })?;
            }
        }
        let _ = std::fs::remove_dir_all(state::dir(&self.root, name));
        Ok(containers.len())
    }

    /// Running containers of `name`, by rank order of creation.
    pub async fn running(&self, name: &str) -> Result<usize> {
        Ok(self
            .containers(name)
            .await?
            .iter()
            .filter(|(_, s, _)| s == "running")
            .count())
    }

    /// Waits until the other ranks have left (they go with the instance), at most `grace`.
    pub async fn wait_all_stopped(&self, name: &str, grace: Duration) {
        let until = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < until {
            if self.running(name).await.unwrap_or(0) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A tar of what each container gets: our entrypoint, the description and the certificate
/// (owner-only), under [`INSIDE`].
fn files_archive(entrypoint: &Path, description: &str, cert: &str) -> Result<Vec<u8>> {
    let exe = std::fs::read(entrypoint).map_err(|e| {
        setup(
            &format!("reading {}", entrypoint.display()),
            e,
            "build it (cargo build -p minicluster-entrypoint) or pass --entrypoint PATH",
        )
    })?;
    let mut b = tar::Builder::new(Vec::new());
    let dir = INSIDE.trim_start_matches('/');
    let mut add = |path: &str, data: &[u8], mode: u32| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(state::now());
        h.set_cksum();
        b.append_data(&mut h, format!("{dir}/{path}"), data)
    };
    add("entrypoint", &exe, 0o755)
        .and_then(|_| add("description.json", description.as_bytes(), 0o444))
        .and_then(|_| add("curve.cert", cert.as_bytes(), 0o400))
        .map_err(|e| setup("packing files for the containers", e, "check free memory"))?;
    b.into_inner()
        .map_err(|e| setup("packing files for the containers", e, "check free memory"))
}

impl crate::Launcher for DockerLauncher {
    fn kind(&self) -> &'static str {
        "docker"
    }
    async fn launch(&self, mc: &MiniCluster) -> Result<Record> {
        DockerLauncher::launch(self, mc).await
    }
    async fn ranks(&self, name: &str) -> Result<Vec<crate::RankState>> {
        let mut ranks: Vec<crate::RankState> = self
            .containers(name)
            .await?
            .into_iter()
            .map(|(_, state, rank)| crate::RankState {
                rank,
                pid: 0,
                running: state == "running",
            })
            .collect();
        ranks.sort_by_key(|r| r.rank);
        Ok(ranks)
    }
    async fn follow_rank0(&self, name: &str) -> Result<i32> {
        DockerLauncher::follow_rank0(self, name).await
    }
    async fn down(&self, name: &str) -> Result<usize> {
        DockerLauncher::down(self, name).await
    }
}
