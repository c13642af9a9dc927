//! Where this broker's CURVE certificate comes from, and installing it where Flux reads it.
//!
//! A mounted file (Kubernetes Secret, or a launcher's copy) wins. Without one, rank 0 creates
//! the certificate in a shared directory (write + rename, so no broker reads half a file) and
//! the other ranks wait for it there. The copy the broker reads is always private (0600): Flux
//! refuses a certificate that group or others can read, and Secret mounts are read-only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use minicluster_core::{ClusterDescription, CurveCert};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::files;
use crate::signals::Stop;

/// Name of the certificate in the shared directory.
pub const SHARED_CERT_NAME: &str = "curve.cert";

/// What the environment offers, gathered before deciding.
#[derive(Clone, Debug)]
pub struct CertFacts {
    /// `--cert`: the mounted certificate.
    pub mounted: PathBuf,
    pub mounted_exists: bool,
    /// `--shared-dir`: a directory every broker of the MiniCluster sees.
    pub shared_dir: Option<PathBuf>,
    pub wait: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum CertSource {
    /// Read the mounted file.
    Mounted { path: PathBuf },
    /// Rank 0: use the shared file, creating it first if it is not there.
    CreateShared { path: PathBuf },
    /// Other ranks: wait (bounded) until rank 0 has created the shared file.
    WaitShared {
        path: PathBuf,
        #[serde(with = "secs")]
        timeout: Duration,
    },
    /// A lone broker with nothing given makes its own.
    GeneratePrivate,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// Decides where the certificate comes from; a pure function of its inputs.
pub fn decide(d: &ClusterDescription, rank: u32, f: &CertFacts) -> Result<CertSource> {
    if f.mounted_exists {
        return Ok(CertSource::Mounted {
            path: f.mounted.clone(),
        });
    }
    if d.flux.curve_cert_provided {
        return Err(Error::Cert {
            path: f.mounted.clone(),
            reason: "is missing, but the spec gives flux.curveCert".into(),
            fix: "mount the MiniCluster's certificate Secret there, or pass --cert with its path"
                .into(),
        });
    }
    match (&f.shared_dir, rank) {
        (Some(dir), 0) => Ok(CertSource::CreateShared {
            path: dir.join(SHARED_CERT_NAME),
        }),
        (Some(dir), _) => Ok(CertSource::WaitShared {
            path: dir.join(SHARED_CERT_NAME),
            timeout: f.wait,
        }),
        (None, 0) if d.max_size == 1 => Ok(CertSource::GeneratePrivate),
        (None, _) => Err(Error::Cert {
            path: f.mounted.clone(),
            reason: format!(
                "is missing, and with {} brokers every one needs the same certificate",
                d.max_size
            ),
            fix: "mount one (`minicluster render --with-cert` writes it), or give every broker the same --shared-dir so rank 0 creates it there".into(),
        }),
    }
}

/// Gets the certificate text from its source (waiting or creating as decided), and the time
/// spent waiting for it.
pub fn obtain(
    d: &ClusterDescription,
    source: &CertSource,
    stop: &Stop,
) -> Result<(String, Duration)> {
    let started = std::time::Instant::now();
    let text = obtain_text(d, source, stop)?;
    let waited = match source {
        CertSource::WaitShared { .. } => started.elapsed(),
        _ => Duration::ZERO,
    };
    Ok((text, waited))
}

fn obtain_text(d: &ClusterDescription, source: &CertSource, stop: &Stop) -> Result<String> {
    match source {
        CertSource::Mounted { path } => read_valid(path),
        CertSource::GeneratePrivate => Ok(generate(d)?.to_text()),
        CertSource::CreateShared { path } => {
            if !path.exists() {
                let text = generate(d)?.to_text();
                if files::create_atomic(path, text.as_bytes(), 0o600)? {
                    tracing::info!(path = %path.display(), "created the MiniCluster's CURVE certificate");
                    return Ok(text);
                }
            }
            read_valid(path)
        }
        CertSource::WaitShared { path, timeout } => {
            let started = std::time::Instant::now();
            let mut attempt = 0u32;
            while !path.exists() {
                attempt += 1;
                if started.elapsed() >= *timeout {
                    return Err(Error::Timeout {
                        what: format!("rank 0 to create the CURVE certificate {}", path.display()),
                        after: *timeout,
                        fix: "check that rank 0 runs and shares this directory, or mount the certificate and pass --cert".into(),
                    });
                }
                tracing::info!(
                    attempt,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "waiting for rank 0 to create {}",
                    path.display()
                );
                stop.sleep(crate::wait::backoff(attempt))?;
            }
            if attempt > 0 {
                tracing::info!(
                    waited_ms = started.elapsed().as_millis() as u64,
                    "the CURVE certificate appeared"
                );
            }
            read_valid(path)
        }
    }
}

/// Writes the private copy the broker reads, owner-only (again at every start).
pub fn install(text: &str, dest: &Path) -> Result<()> {
    files::replace(dest, text.as_bytes(), 0o600)
}

fn generate(d: &ClusterDescription) -> Result<CurveCert> {
    CurveCert::generate(&d.name).map_err(Error::from)
}

/// Reads a certificate and checks it (format, key lengths, matching pair) before any broker
/// sees it. The error names the file and the problem, never a key.
fn read_valid(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Cert {
        path: path.into(),
        reason: format!("cannot be read: {e}"),
        fix: "mount the certificate readable by this user".into(),
    })?;
    CurveCert::parse(&text).map_err(|e| Error::Cert {
        path: path.into(),
        reason: e.to_string(),
        fix: "replace it with a certificate written by `flux keygen` or `minicluster render --with-cert`".into(),
    })?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::description;

    fn facts(mounted_exists: bool, shared: Option<&str>) -> CertFacts {
        CertFacts {
            mounted: "/etc/minicluster/curve.cert".into(),
            mounted_exists,
            shared_dir: shared.map(PathBuf::from),
            wait: Duration::from_secs(60),
        }
    }

    #[test]
    fn mounted_cert_wins_on_every_rank() {
        let d = description(4, 4);
        for rank in 0..4 {
            assert_eq!(
                decide(&d, rank, &facts(true, Some("/shared"))).unwrap(),
                CertSource::Mounted {
                    path: "/etc/minicluster/curve.cert".into()
                }
            );
        }
    }

    #[test]
    fn rank_zero_creates_and_the_others_wait() {
        let d = description(4, 4);
        assert_eq!(
            decide(&d, 0, &facts(false, Some("/shared"))).unwrap(),
            CertSource::CreateShared {
                path: "/shared/curve.cert".into()
            }
        );
        assert_eq!(
            decide(&d, 3, &facts(false, Some("/shared"))).unwrap(),
            CertSource::WaitShared {
                path: "/shared/curve.cert".into(),
                timeout: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn nothing_given_is_an_error_unless_alone() {
        let d = description(4, 4);
        let e = decide(&d, 1, &facts(false, None)).unwrap_err().to_string();
        assert!(
            e.contains("every one needs the same certificate") && e.contains("--shared-dir"),
            "{e}"
        );
        assert_eq!(
            decide(&description(1, 1), 0, &facts(false, None)).unwrap(),
            CertSource::GeneratePrivate
        );
        // A cluster that can grow needs a shared cert even while it has one broker.
        assert!(decide(&description(1, 4), 0, &facts(false, None)).is_err());
    }

    #[test]
    fn spec_cert_must_be_mounted() {
        let mut d = description(2, 2);
        d.flux.curve_cert_provided = true;
        let e = decide(&d, 0, &facts(false, Some("/shared")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec gives flux.curveCert"), "{e}");
    }

    #[test]
    fn corrupt_cert_is_refused_without_showing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curve.cert");
        let good = CurveCert::generate("mc").unwrap();
        let secret = z85_secret(&good.to_text());
        // Swap in another pair's public key: a mismatched pair.
        let other = CurveCert::generate("mc").unwrap();
        let text = good
            .to_text()
            .replace(&good.public_key(), &other.public_key());
        std::fs::write(&p, &text).unwrap();
        let e = read_valid(&p).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(!e.contains(&secret), "secret key leaked: {e}");
        std::fs::write(&p, "not a cert").unwrap();
        assert!(read_valid(&p).is_err());
    }

    #[test]
    fn shared_cert_is_created_once_and_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let d = description(2, 2);
        let stop = Stop::none();
        let path = dir.path().join(SHARED_CERT_NAME);
        let waiter = {
            let (d, path, stop) = (d.clone(), path.clone(), stop.clone());
            std::thread::spawn(move || {
                obtain(
                    &d,
                    &CertSource::WaitShared {
                        path,
                        timeout: Duration::from_secs(20),
                    },
                    &stop,
                )
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let (first, _) =
            obtain(&d, &CertSource::CreateShared { path: path.clone() }, &stop).unwrap();
        let (again, _) =
            obtain(&d, &CertSource::CreateShared { path: path.clone() }, &stop).unwrap();
        assert_eq!(first, again, "rank 0 restarting keeps the certificate");
        let (waited_for, waited) = waiter.join().unwrap().unwrap();
        assert_eq!(waited_for, first);
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
    }

    #[test]
    fn waiting_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let src = CertSource::WaitShared {
            path: dir.path().join(SHARED_CERT_NAME),
            timeout: Duration::from_millis(300),
        };
        let e = obtain(&description(2, 2), &src, &Stop::none())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gave up") && e.contains("rank 0 to create"),
            "{e}"
        );
    }

    fn z85_secret(text: &str) -> String {
        text.lines()
            .find(|l| l.contains("secret-key"))
            .and_then(|l| l.split('"').nth(1))
            .unwrap()
            .to_string()
    }
}
