//! The Secret with the CURVE certificate and the ConfigMap with the cluster description.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minicluster_core::ClusterDescription;

/// Key of the certificate in its Secret (and file name in the pods).
pub const CERT_KEY: &str = "curve.cert";
/// Key of the description in its ConfigMap.
pub const DESCRIPTION_KEY: &str = "description.json";

pub fn cert_secret(meta: ObjectMeta, cert: &str) -> Secret {
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        // `data`, not `stringData`: applying the same bytes again is then a true no-op.
        data: Some(BTreeMap::from([(
            CERT_KEY.into(),
            ByteString(cert.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

pub fn description(meta: ObjectMeta, d: &ClusterDescription) -> ConfigMap {
    ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(DESCRIPTION_KEY.into(), d.to_json())])),
        ..ConfigMap::default()
    }
}
