//! The MiniCluster spec: its types, how it is read from YAML, and how it is validated.

mod load;
mod nested;
mod script;
mod types;
mod validate;

pub use load::{Loaded, LoadedCluster, MAX_INPUT_BYTES, load_bytes, load_file};
pub use nested::{NestedFlux, nested_flux_command};
pub use script::{SCRIPT_FILE_NAME, SCRIPT_SHELL, script_file_text};
pub use types::*;
pub use validate::validate;

/// The CustomResourceDefinition of `miniclusters.flux-framework.org`, as YAML.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_norway::to_string(&MiniCluster::crd()).expect("the CRD always serialises")
}
