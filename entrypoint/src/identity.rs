//! Which broker this is: its rank and the hostname Flux will look up in `bootstrap.hosts`.
//!
//! Flux assigns ranks by the position of the broker's hostname in the hosts list, so the
//! hostname decides; `JOB_COMPLETION_INDEX` (Kubernetes Indexed Jobs) and `--rank` are
//! checked against it. Brokers sharing one machine (explicit per-broker endpoints) have no
//! hostname of their own: theirs is `<name>-<rank>`, passed to the broker as `-Shostname`.

use minicluster_core::description::range_hostlist;
use minicluster_core::{ClusterDescription, Hostlist};
use serde::Serialize;

use crate::error::{Error, Result};

/// What the environment says about this broker, gathered before deciding.
#[derive(Clone, Debug, Default)]
pub struct IdentityFacts {
    /// `$JOB_COMPLETION_INDEX`, unparsed.
    pub completion_index: Option<String>,
    /// The OS hostname.
    pub os_hostname: String,
    /// `--rank`.
    pub rank_flag: Option<u32>,
    /// `--hostname`.
    pub hostname_flag: Option<String>,
}

/// Where the rank came from (shown by `--dry-run`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RankSource {
    CompletionIndex,
    Hostname,
    Flag,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub rank: u32,
    pub rank_source: RankSource,
    pub hostname: String,
    /// The broker must be told its hostname (`-Shostname=`): it is not the OS's.
    pub set_hostname: bool,
}

/// Decides rank and hostname; a pure function of the description and the facts.
pub fn decide(d: &ClusterDescription, f: &IdentityFacts) -> Result<Identity> {
    let index = match &f.completion_index {
        None => None,
        Some(s) => Some(s.trim().parse::<u32>().map_err(|_| Error::Identity {
            problem: format!("JOB_COMPLETION_INDEX is {s:?}, not a rank number"),
            fix: "unset it, or run under a Kubernetes Indexed Job that sets it".into(),
        })?),
    };
    let given = index
        .map(|r| (r, RankSource::CompletionIndex))
        .or(f.rank_flag.map(|r| (r, RankSource::Flag)));
    if let Some((rank, source)) = given
        && rank >= d.max_size
    {
        return Err(Error::Identity {
            problem: format!(
                "rank {rank} ({}) is outside MiniCluster {} of maxSize {} (ranks 0-{})",
                source_name(source),
                d.name,
                d.max_size,
                d.max_size - 1
            ),
            fix: "start at most maxSize brokers, or raise maxSize".into(),
        });
    }

    // Brokers sharing a machine: the hostname is the rank's, whatever the OS says.
    if !d.network.endpoints.is_empty() && f.hostname_flag.is_none() {
        let Some((rank, source)) = given else {
            return Err(Error::Identity {
                problem: format!(
                    "MiniCluster {} runs its brokers on one machine, so the hostname cannot tell the rank",
                    d.name
                ),
                fix: "pass --rank N (or set JOB_COMPLETION_INDEX)".into(),
            });
        };
        return Ok(Identity {
            rank,
            rank_source: source,
            hostname: d.hostname(rank),
            set_hostname: true,
        });
    }

    let hostname = f
        .hostname_flag
        .clone()
        .unwrap_or_else(|| f.os_hostname.clone());
    // Kubernetes may give the FQDN when setHostnameAsFQDN is on; Flux matches the short name.
    let short = hostname.split('.').next().unwrap_or_default().to_string();
    let Some(position) = position_in(d, &short)? else {
        return Err(Error::Identity {
            problem: format!(
                "hostname {short:?} is not in MiniCluster {}'s hostlist {} (Flux would refuse to start this broker)",
                d.name, d.hostlist
            ),
            fix: format!(
                "run the broker with a hostname {} (pod hostname/subdomain from the Indexed Job), or pass --hostname",
                d.hostlist
            ),
        });
    };
    if let Some((rank, source)) = given
        && rank != position
    {
        return Err(Error::Identity {
            problem: format!(
                "{} says rank {rank} but hostname {short} is rank {position} in {}",
                source_name(source),
                d.hostlist
            ),
            fix:
                "make the hostname and the index agree (the pod's hostname must be <name>-<index>)"
                    .into(),
        });
    }
    Ok(Identity {
        rank: position,
        rank_source: given.map_or(RankSource::Hostname, |(_, s)| s),
        set_hostname: short != f.os_hostname.split('.').next().unwrap_or_default(),
        hostname: short,
    })
}

/// How the rank's source is named in messages.
pub fn source_name(s: RankSource) -> &'static str {
    match s {
        RankSource::CompletionIndex => "JOB_COMPLETION_INDEX",
        RankSource::Hostname => "the hostname",
        RankSource::Flag => "--rank",
    }
}

/// Position of `host` in the hostlist. `<name>-<i>` with `i < maxSize` is answered without
/// expanding the hostlist, so a 100,000-broker MiniCluster costs nothing here.
fn position_in(d: &ClusterDescription, host: &str) -> Result<Option<u32>> {
    if let Some(suffix) = host.strip_prefix(&format!("{}-", d.name)) {
        let canonical = !suffix.is_empty()
            && suffix.bytes().all(|b| b.is_ascii_digit())
            && (suffix == "0" || !suffix.starts_with('0'));
        if canonical
            && let Ok(i) = suffix.parse::<u32>()
            && i < d.max_size
            && d.hostlist == range_hostlist(&d.name, d.max_size)
        {
            return Ok(Some(i));
        }
    }
    let list = Hostlist::parse(&d.hostlist)?;
    Ok(list.position(host).and_then(|p| u32::try_from(p).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::description;

    fn facts(host: &str) -> IdentityFacts {
        IdentityFacts {
            os_hostname: host.into(),
            ..Default::default()
        }
    }

    #[test]
    fn rank_from_completion_index_matches_hostname() {
        let d = description(4, 4);
        let f = IdentityFacts {
            completion_index: Some("2".into()),
            ..facts("mc-2")
        };
        let id = decide(&d, &f).unwrap();
        assert_eq!(
            (id.rank, id.rank_source, id.set_hostname),
            (2, RankSource::CompletionIndex, false)
        );
    }

    #[test]
    fn rank_from_hostname_suffix_and_fqdn() {
        let d = description(4, 8);
        let id = decide(&d, &facts("mc-7.flux-service.default.svc.cluster.local")).unwrap();
        assert_eq!((id.rank, id.rank_source), (7, RankSource::Hostname));
        assert_eq!(id.hostname, "mc-7");
    }

    #[test]
    fn rank_from_flag_with_matching_hostname_flag() {
        let d = description(4, 4);
        let f = IdentityFacts {
            rank_flag: Some(3),
            hostname_flag: Some("mc-3".into()),
            ..facts("laptop")
        };
        let id = decide(&d, &f).unwrap();
        assert_eq!(
            (id.rank, id.rank_source, id.set_hostname),
            (3, RankSource::Flag, true)
        );
    }

    #[test]
    fn hostname_outside_the_hostlist_is_refused() {
        let d = description(4, 4);
        for host in ["mc-4", "mc-01", "other-1", "mc-", "mc"] {
            let e = decide(&d, &facts(host)).unwrap_err().to_string();
            assert!(
                e.contains("is not in MiniCluster mc's hostlist mc-[0-3]"),
                "{host}: {e}"
            );
            assert!(e.contains("fix:"), "{e}");
        }
    }

    #[test]
    fn index_and_hostname_that_disagree_are_refused() {
        let d = description(4, 4);
        let f = IdentityFacts {
            completion_index: Some("1".into()),
            ..facts("mc-2")
        };
        let e = decide(&d, &f).unwrap_err().to_string();
        assert!(
            e.contains("JOB_COMPLETION_INDEX says rank 1 but hostname mc-2 is rank 2"),
            "{e}"
        );
    }

    #[test]
    fn bad_completion_index_and_rank_beyond_max_size() {
        let d = description(2, 4);
        let f = IdentityFacts {
            completion_index: Some("two".into()),
            ..facts("mc-2")
        };
        assert!(
            decide(&d, &f)
                .unwrap_err()
                .to_string()
                .contains("not a rank number")
        );
        let f = IdentityFacts {
            rank_flag: Some(4),
            ..facts("mc-2")
        };
        assert!(
            decide(&d, &f)
                .unwrap_err()
                .to_string()
                .contains("outside MiniCluster mc of maxSize 4")
        );
    }

    #[test]
    fn brokers_sharing_a_machine_take_the_rank_name() {
        let mut d = description(3, 3);
        d.network.endpoints = crate::testing::loopback(&d, 9000);
        let f = IdentityFacts {
            rank_flag: Some(1),
            ..facts("laptop")
        };
        let id = decide(&d, &f).unwrap();
        assert_eq!(
            (id.rank, id.hostname.as_str(), id.set_hostname),
            (1, "mc-1", true)
        );
        let e = decide(&d, &facts("laptop")).unwrap_err().to_string();
        assert!(e.contains("pass --rank N"), "{e}");
    }

    #[test]
    fn one_broker_cluster_and_custom_hostlist() {
        let d = description(1, 1);
        assert_eq!(decide(&d, &facts("mc-0")).unwrap().rank, 0);
        let mut d = description(3, 3);
        d.hostlist = "login1,mc-[0-1]".into();
        assert_eq!(decide(&d, &facts("mc-1")).unwrap().rank, 2);
        assert_eq!(decide(&d, &facts("login1")).unwrap().rank, 0);
    }
}
