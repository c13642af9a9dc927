//! The cluster's certificates and kubeconfigs: one CA; serving certificates for the API
//! server; client certificates for the admin, the controller manager, the scheduler, the
//! kubelet (a node identity, for the Node authorizer) and the API server's calls to the
//! kubelet; the service-account signing key. ECDSA P-256 throughout.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;

use super::{API_SERVICE_IP, DOMAIN, HOST_IP, Layout, NODE};
use crate::error::{Result, io};

/// Files to write under `pki/` and next to it (kubeconfigs), by relative path.
pub type Files = BTreeMap<String, String>;

/// A client identity: (file stem, common name, organisations).
const CLIENTS: &[(&str, &str, &[&str])] = &[
    ("admin", "minicluster-admin", &["system:masters"]),
    ("controller-manager", "system:kube-controller-manager", &[]),
    ("scheduler", "system:kube-scheduler", &[]),
    ("kubelet", "system:node:minicluster-node", &["system:nodes"]),
    (
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        &["system:masters"],
    ),
];

pub fn generate() -> Result<Files> {
    let mut files = Files::new();
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = dn("minicluster-test-ca", &[]);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let ca_pem = ca.pem();
    files.insert("pki/ca.crt".into(), ca_pem.clone());

    // The API server, by every name a client uses.
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(vec![
        "kubernetes".to_string(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{DOMAIN}"),
        "localhost".into(),
    ])?;
    for ip in [
        IpAddr::V4(HOST_IP),
        IpAddr::V4(API_SERVICE_IP),
        "127.0.0.1".parse().unwrap(),
    ] {
        p.subject_alt_names.push(SanType::IpAddress(ip));
    }
    p.distinguished_name = dn("kube-apiserver", &[]);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &ca)?;
    files.insert("pki/apiserver.crt".into(), cert.pem());
    files.insert("pki/apiserver.key".into(), key.serialize_pem());

    for (stem, cn, orgs) in CLIENTS {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = dn(cn, orgs);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &ca)?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        files.insert(format!("pki/{stem}.crt"), cert_pem.clone());
        files.insert(format!("pki/{stem}.key"), key_pem.clone());
        if *stem != "apiserver-kubelet-client" {
            files.insert(
                format!("{stem}.kubeconfig"),
                kubeconfig(&ca_pem, cn, &cert_pem, &key_pem),
            );
        }
    }

    // Service-account tokens are signed with this key and checked with its public half.
    let sa = KeyPair::generate()?;
    files.insert("pki/sa.key".into(), sa.serialize_pem());
    files.insert("pki/sa.pub".into(), sa.public_key_pem());
    Ok(files)
}

/// Writes the files owner-only (they hold private keys).
pub fn write(layout: &Layout, files: &Files) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    for (rel, text) in files {
        let path = layout.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("writing {}", path.display())))?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(())
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    for o in orgs {
        d.push(DnType::OrganizationName, *o);
    }
    d
}

/// A kubeconfig for `user` with its certificate inline, pointing at the API server.
pub fn kubeconfig(ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    use base64::Engine;
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "minicluster-test", "cluster": {
            "server": format!("https://{HOST_IP}:{}", super::API_PORT),
            "certificate-authority-data": encode(ca_pem),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": encode(cert_pem),
            "client-key-data": encode(key_pem),
        }}],
        "contexts": [{"name": "minicluster-test", "context": {
            "cluster": "minicluster-test", "user": user, "namespace": "default",
        }}],
        "current-context": "minicluster-test",
    });
    serde_norway::to_string(&doc).expect("a kubeconfig serialises")
}

/// The node name goes into the kubelet's identity; kept here so the two cannot disagree.
pub fn kubelet_user() -> String {
    format!("system:node:{NODE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_identity_has_its_files() {
        let f = generate().unwrap();
        for k in [
            "pki/ca.crt",
            "pki/apiserver.crt",
            "pki/apiserver.key",
            "pki/sa.key",
            "pki/sa.pub",
            "admin.kubeconfig",
            "kubelet.kubeconfig",
            "pki/apiserver-kubelet-client.crt",
        ] {
            assert!(f.contains_key(k), "{k}");
        }
        assert_eq!(kubelet_user(), CLIENTS[3].1);
        let kc: serde_json::Value = serde_norway::from_str(&f["admin.kubeconfig"]).unwrap();
        assert_eq!(kc["current-context"], "minicluster-test");
    }
}
