//! What the API server can do, by its Kubernetes version: the Job features a MiniCluster's
//! lifecycle uses where they exist, and the operator's own watch where they do not.

/// The oldest Kubernetes release the operator supports.
pub const OLDEST_MINOR: u32 = 26;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerFeatures {
    /// Kubernetes 1.`minor`.
    pub minor: u32,
}

impl Default for ServerFeatures {
    /// What `render` shows without a server: a current release.
    fn default() -> Self {
        ServerFeatures { minor: 33 }
    }
}

impl ServerFeatures {
    /// From `/version`'s minor ("33", "26+").
    pub fn from_minor(minor: &str) -> ServerFeatures {
        let digits: String = minor.chars().take_while(char::is_ascii_digit).collect();
        ServerFeatures {
            minor: digits.parse().unwrap_or(OLDEST_MINOR),
        }
    }

    /// Pod failure policy (beta and on by default from 1.26): rank 0's exit ends the Job
    /// and a worker that left is replaced without counting as a failure.
    pub fn pod_failure_policy(self) -> bool {
        self.minor >= 26
    }

    /// Elastic Indexed Jobs (beta from 1.27): `completions` may change with `parallelism`,
    /// so a running MiniCluster can be resized.
    pub fn elastic_indexed_job(self) -> bool {
        self.minor >= 27
    }

    /// The completion index as a pod label (1.28); earlier servers set the annotation only.
    pub fn completion_index_label(self) -> bool {
        self.minor >= 28
    }

    /// Job success policy (beta from 1.31): the Job succeeds when index 0 (rank 0) does,
    /// and the workers still running are stopped by the Job controller.
    pub fn success_policy(self) -> bool {
        self.minor >= 31
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_the_version() {
        let old = ServerFeatures::from_minor("26");
        assert!(old.pod_failure_policy());
        assert!(!old.elastic_indexed_job() && !old.success_policy());
        let gke = ServerFeatures::from_minor("30+");
        assert_eq!(gke.minor, 30);
        assert!(gke.elastic_indexed_job() && !gke.success_policy());
        assert!(ServerFeatures::from_minor("36").success_policy());
        assert_eq!(ServerFeatures::from_minor("x").minor, OLDEST_MINOR);
    }
}
