//! Random MiniCluster specs of the shapes the API server accepts never panic the pure part of
//! the controller (validate → build → status), whatever their values.

use proptest::prelude::*;
use serde_json::{Value, json};

use minicluster_core::MiniCluster;
use minicluster_operator::build::{BuildOptions, build};
use minicluster_operator::status::{Observed, compute};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,20}",
        ".{0,40}",
        Just(String::new()),
        Just("$(echo hi) | tee x; 'unclosed".to_string()),
    ]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![6 => 1i64..40, 1 => -3i64..1, 1 => Just(1_000_000), 1 => Just(i64::from(i32::MAX))]
}

/// Mostly a good value, sometimes anything: both paths get exercised.
fn mostly<T: std::fmt::Debug + Clone + 'static>(
    good: impl Strategy<Value = T> + 'static,
    any: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![8 => good, 1 => any].boxed()
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    proptest::option::weighted(0.15, s).boxed()
}

fn container() -> impl Strategy<Value = Value> {
    (
        mostly("[a-z]{1,10}(/[a-z]{1,8})?:latest", text()),
        mostly(Just(Some("hostname".to_string())), proptest::option::of(text())),
        opt(any::<bool>()),
        opt(any::<bool>()),
        proptest::collection::btree_map(mostly("[A-Z_]{1,8}", text()), text(), 0..3),
        proptest::collection::btree_map(
            "[a-z]{1,8}",
            (
                mostly("/[a-z]{1,8}".prop_map(Some), proptest::option::of(text())),
                any::<bool>(),
                opt(text()),
                opt(text()),
            ),
            0..2,
        ),
        proptest::collection::vec(mostly(1i32..65536, -2i32..70000), 0..3),
    )
        .prop_map(|(image, command, launcher, run_flux, env, vols, ports)| {
            let volumes: serde_json::Map<String, Value> = vols
                .into_iter()
                .map(|(k, (path, empty, claim, medium))| {
                    (k, json!({"path": path, "emptyDir": empty, "claimName": claim, "emptyDirMedium": medium}))
                })
                .collect();
            json!({"image": image, "command": command, "launcher": launcher, "runFlux": run_flux,
                   "environment": env, "volumes": volumes, "ports": ports})
        })
}

fn spec() -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9-]{0,70}",
        int(),
        opt(int()),
        opt(int()),
        mostly(
            proptest::collection::vec(container(), 1..2),
            proptest::collection::vec(container(), 0..3),
        ),
        mostly(
            Just(Vec::new()),
            proptest::collection::vec(container(), 0..2),
        ),
        (any::<bool>(), any::<bool>(), opt(text()), opt(text())),
        (opt(text()), mostly(0i64..8, -2i64..10), opt(text())),
    )
        .prop_map(
            |(
                name,
                size,
                max,
                min,
                containers,
                services,
                (interactive, cleanup, headless, topology),
                (cert, log_level, timeout),
            )| {
                json!({
                    "apiVersion": "flux-framework.org/v1alpha2",
                    "kind": "MiniCluster",
                    "metadata": {"name": name, "namespace": "ns", "uid": "u-1"},
                    "spec": {
                        "size": size, "maxSize": max, "minSize": min, "tasks": size,
                        "interactive": interactive, "cleanup": cleanup,
                        "containers": containers, "services": services,
                        "network": {"headlessName": headless},
                        "flux": {"topology": topology, "curveCert": cert, "logLevel": log_level,
                                 "connectTimeout": timeout.unwrap_or_else(|| "5s".into())},
                    }
                })
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn validate_build_and_status_never_panic(v in spec()) {
        // Values out of the i32 range are refused by the API server; skip those documents.
        let Ok(mc) = serde_json::from_value::<MiniCluster>(v) else { return Ok(()) };
        let cert = minicluster_core::CurveCert::generate("x").unwrap().to_text();
        let problems = minicluster_core::spec::validate(&mc);
        let built = build(&mc, &cert, &BuildOptions::default());
        // Build succeeds exactly when the spec is valid.
        prop_assert_eq!(built.is_ok(), problems.is_empty(), "{:?}", problems);
        if let Ok(children) = built {
            prop_assert_eq!(children.job.spec.as_ref().unwrap().parallelism, Some(mc.spec.size));
            let _ = children.objects();
        }
        let o = Observed { problems, ..Observed::default() };
        let _ = compute(&mc, &o, k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    }
}

#[test]
fn the_generator_reaches_valid_specs_too() {
    // Otherwise the property above would only ever test refusals.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = spec();
    let (mut parsed, mut valid) = (0, 0);
    for _ in 0..2000 {
        let v = strategy.new_tree(&mut runner).unwrap().current();
        if let Ok(mc) = serde_json::from_value::<MiniCluster>(v) {
            parsed += 1;
            valid += usize::from(minicluster_core::spec::validate(&mc).is_empty());
        }
    }
    eprintln!("{parsed} parsed, {valid} valid");
    assert!(
        parsed > 1000 && valid > 200,
        "{parsed} parsed, {valid} valid"
    );
}
