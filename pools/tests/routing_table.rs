//! Routing as a table: every combination of requires / provides / accepts the semantics name,
//! with lists and `true` on every side. Each row: job requires, pool provides, pool accepts,
//! eligible?, and why not.

use minicluster_pools::routing::{Pool, Route, route};
use minicluster_pools::tags::{Tags, parse_tags};

fn tags(s: &str) -> Tags {
    let flags: Vec<&str> = s.split_whitespace().collect();
    parse_tags(&flags).unwrap()
}

fn pool(provides: &str, accepts: &str) -> Pool {
    Pool {
        name: "p".into(),
        provides: tags(provides),
        accepts: tags(accepts),
        ..Pool::new("p", Default::default())
    }
}

/// (requires, provides, accepts, eligible, reason when not)
const TABLE: &[(&str, &str, &str, bool, &str)] = &[
    // Nothing asked: any plain pool; never a pool that accepts only tagged work.
    ("", "", "", true, ""),
    ("", "gpu:A100", "", true, ""),
    (
        "",
        "",
        "gpu:A100",
        false,
        "accepts only jobs that require gpu:A100",
    ),
    (
        "",
        "",
        "gpu:true",
        false,
        "accepts only jobs that require gpu:true",
    ),
    // One required value.
    ("gpu:A100", "gpu:A100", "", true, ""),
    (
        "gpu:A100",
        "gpu:H100",
        "",
        false,
        "provides gpu:H100, the job requires gpu:A100",
    ),
    ("gpu:A100", "gpu:A100,H100", "", true, ""),
    ("gpu:A100", "", "", false, "does not provide gpu"),
    ("gpu:A100", "arch:x86", "", false, "does not provide gpu"),
    // A list required: OR within the key.
    ("gpu:A100,H100", "gpu:H100", "", true, ""),
    (
        "gpu:A100,H100",
        "gpu:V100",
        "",
        false,
        "provides gpu:V100, the job requires gpu:A100,H100",
    ),
    ("gpu:A100,H100", "gpu:V100,H100", "", true, ""),
    // `true` required: any value of the key, but the key itself.
    ("gpu:true", "gpu:A100", "", true, ""),
    ("gpu:true", "gpu:true", "", true, ""),
    ("gpu:true", "", "", false, "does not provide gpu"),
    // `true` provided: the key without a named value meets only `true`.
    (
        "gpu:A100",
        "gpu:true",
        "",
        false,
        "provides gpu:true, the job requires gpu:A100",
    ),
    // AND across keys.
    ("gpu:A100 arch:x86", "gpu:A100 arch:x86", "", true, ""),
    (
        "gpu:A100 arch:x86",
        "gpu:A100 arch:arm",
        "",
        false,
        "provides arch:arm, the job requires arch:x86",
    ),
    (
        "gpu:A100 arch:x86",
        "gpu:A100",
        "",
        false,
        "does not provide arch",
    ),
    (
        "gpu:A100,H100 arch:x86",
        "gpu:H100 arch:x86 mem:big",
        "",
        true,
        "",
    ),
    // Accepts values count as provided.
    ("gpu:A100", "", "gpu:A100", true, ""),
    ("gpu:A100", "", "gpu:A100,H100", true, ""),
    ("gpu:A100", "gpu:V100", "gpu:A100", true, ""),
    ("gpu:true", "", "gpu:A100", true, ""),
    ("gpu:true", "", "gpu:true", true, ""),
    // Accepts filters: every accepts key must be asked for, with an overlapping value.
    (
        "gpu:V100",
        "gpu:V100",
        "gpu:A100",
        false,
        "accepts only jobs that require gpu:A100",
    ),
    (
        "arch:x86",
        "arch:x86",
        "gpu:A100",
        false,
        "accepts only jobs that require gpu:A100",
    ),
    ("gpu:A100,H100", "", "gpu:H100", true, ""),
    ("gpu:A100 arch:x86", "arch:x86", "gpu:A100", true, ""),
    (
        "gpu:A100",
        "",
        "gpu:A100 arch:x86",
        false,
        "accepts only jobs that require arch:x86",
    ),
    ("gpu:A100 arch:x86", "", "gpu:A100 arch:x86", true, ""),
    (
        "gpu:A100 arch:arm",
        "",
        "gpu:A100 arch:x86",
        false,
        "provides arch:x86, the job requires arch:arm",
    ),
    ("gpu:true arch:x86", "arch:x86", "gpu:true", true, ""),
];

#[test]
fn the_routing_table() {
    let mut failures = Vec::new();
    for (i, (requires, provides, accepts, want, why)) in TABLE.iter().enumerate() {
        let r = route(&tags(requires), &pool(provides, accepts));
        let got = r == Route::Eligible;
        if got != *want || (!got && !r.to_string().contains(why)) {
            failures.push(format!(
                "row {i}: requires [{requires}] provides [{provides}] accepts [{accepts}]: got {r}, want {}",
                if *want { "eligible".to_string() } else { format!("not: {why}") }
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_disabled_pool_takes_nothing() {
    let mut p = pool("gpu:A100", "");
    p.enabled = false;
    assert_eq!(route(&tags("gpu:A100"), &p), Route::Disabled);
    assert_eq!(route(&tags(""), &p).to_string(), "is disabled (draining)");
}

#[test]
fn adding_a_requirement_never_widens_and_adding_a_provided_value_never_narrows() {
    // Monotonicity over a small universe of keys and values, every combination.
    let values = ["", "A", "B", "A,B", "true"];
    let t = |k: &str, v: &str| {
        if v.is_empty() {
            String::new()
        } else {
            format!("{k}:{v}")
        }
    };
    for r in values {
        for p in values {
            for a in values {
                let base = route(&tags(&t("gpu", r)), &pool(&t("gpu", p), &t("gpu", a)))
                    == Route::Eligible;
                let stricter = route(
                    &tags(&format!("{} arch:x86", t("gpu", r))),
                    &pool(&t("gpu", p), &t("gpu", a)),
                ) == Route::Eligible;
                assert!(
                    !stricter || base,
                    "requires {r} + arch widened: provides {p} accepts {a}"
                );
                let richer = route(
                    &tags(&t("gpu", r)),
                    &pool(&format!("{} arch:x86", t("gpu", p)), &t("gpu", a)),
                ) == Route::Eligible;
                assert!(
                    !base || richer,
                    "providing more narrowed: requires {r} provides {p} accepts {a}"
                );
            }
        }
    }
}
