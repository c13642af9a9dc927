//! Our MiniCluster CRD has every field of the flux-operator v1alpha2 CRD, with the same
//! names, types, formats and defaults, so existing MiniCluster YAML applies unchanged.

mod common;

use kube::CustomResourceExt;
use minicluster_core::MiniCluster;
use serde_json::Value;

fn spec_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
}

/// Walks the anchor schema and reports every place ours differs.
fn compare(path: &str, want: &Value, got: &Value, diffs: &mut Vec<String>) {
    for key in ["type", "format", "default", "x-kubernetes-int-or-string"] {
        if want.get(key) != got.get(key) {
            diffs.push(format!(
                "{path}: {key} is {:?}, the anchor has {:?}",
                got.get(key),
                want.get(key)
            ));
        }
    }
    let mut want_required: Vec<&Value> = want
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mut got_required: Vec<&Value> = got
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    want_required.sort_by_key(|v| v.to_string());
    got_required.sort_by_key(|v| v.to_string());
    if want_required != got_required {
        diffs.push(format!(
            "{path}: required is {got_required:?}, the anchor has {want_required:?}"
        ));
    }
    if let Some(props) = want.get("properties").and_then(Value::as_object) {
        let ours = got.get("properties").and_then(Value::as_object);
        for (name, sub) in props {
            match ours.and_then(|o| o.get(name)) {
                Some(g) => compare(&format!("{path}.{name}"), sub, g, diffs),
                None => diffs.push(format!("{path}.{name}: missing")),
            }
        }
        if let Some(ours) = ours {
            for name in ours.keys().filter(|k| !props.contains_key(*k)) {
                diffs.push(format!("{path}.{name}: not in the anchor"));
            }
        }
    }
    if let Some(items) = want.get("items") {
        compare(
            &format!("{path}[]"),
            items,
            got.get("items").unwrap_or(&Value::Null),
            diffs,
        );
    }
    if let Some(ap) = want.get("additionalProperties").filter(|v| v.is_object()) {
        compare(
            &format!("{path}{{}}"),
            ap,
            got.get("additionalProperties").unwrap_or(&Value::Null),
            diffs,
        );
    }
}

#[test]
fn spec_schema_matches_the_flux_operator_crd() {
    let text = std::fs::read_to_string(common::anchors().join("crd.yaml")).unwrap();
    let anchor: Value = serde_norway::from_str(&text).unwrap();
    let ours = serde_json::to_value(MiniCluster::crd()).unwrap();
    let mut diffs = Vec::new();
    compare("spec", spec_schema(&anchor), spec_schema(&ours), &mut diffs);
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn identity_scale_and_printer_columns() {
    let crd = MiniCluster::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("miniclusters.flux-framework.org")
    );
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["mc".to_string()][..])
    );
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha2");
    let scale = v.subresources.as_ref().unwrap().scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.size");
    assert_eq!(scale.status_replicas_path, ".status.size");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let cols: Vec<&str> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["Size", "Ready", "Phase", "Age"]);
}
