//! The MiniCluster spec: its types, how it is read from YAML, and how it is validated.

mod load;
mod types;
mod validate;

pub use load::{Loaded, LoadedCluster, MAX_INPUT_BYTES, load_bytes, load_file};
pub use types::*;
pub use validate::validate;

/// The CustomResourceDefinition of `miniclusters.flux-framework.org`, as YAML.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_norway::to_string(&MiniCluster::crd()).expect("the CRD always serialises")
}
