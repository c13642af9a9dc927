//! Pools as a TOML file: export, and a declarative import that shows what it will change.
//! Pools in the file are created or updated; pools missing from it are deleted, unless
//! `only` limits the scope to the named pools.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::pool::{Pool, validate};

/// The file: `[[pool]]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolsFile {
    #[serde(default)]
    pool: Vec<Pool>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("{file}: is not a pools file: {reason}")]
    Parse { file: String, reason: String },
    #[error("{file}: pool {name}: {problems}")]
    Invalid {
        file: String,
        name: String,
        problems: String,
    },
    #[error("{file}: pool {0} is defined twice (fix: keep one [[pool]] table per name)", file = .1)]
    Duplicate(String, String),
    #[error("--only {0}: no such pool in the file or on the server")]
    UnknownOnly(String),
}

/// The pools (or those named in `only`) as a TOML file.
pub fn export(pools: &[Pool], only: &[String]) -> String {
    let pool: Vec<Pool> = pools
        .iter()
        .filter(|p| only.is_empty() || only.contains(&p.name))
        .cloned()
        .collect();
    let body = toml::to_string(&PoolsFile { pool }).expect("pools serialise as TOML");
    format!("# minicluster pools: `minicluster pools import FILE` applies this file.\n{body}")
}

/// Reads and checks a pools file: it parses, every pool is valid, no name twice.
pub fn parse(file: &str, text: &str) -> Result<Vec<Pool>, SyncError> {
    let parsed: PoolsFile = toml::from_str(text).map_err(|e| SyncError::Parse {
        file: file.into(),
        reason: e.to_string().trim().replace('\n', " "),
    })?;
    let mut seen = BTreeSet::new();
    for p in &parsed.pool {
        if !seen.insert(p.name.clone()) {
            return Err(SyncError::Duplicate(p.name.clone(), file.into()));
        }
        validate(p).map_err(|e| SyncError::Invalid {
            file: file.into(),
            name: p.name.clone(),
            problems: e.0.join("; "),
        })?;
    }
    Ok(parsed.pool)
}

/// One change an import makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create(Pool),
    /// The fields that differ, as `field: old → new`.
    Update {
        pool: Pool,
        fields: Vec<String>,
    },
    Delete(String),
}

/// What importing `wanted` over `current` changes (nothing for pools that are the same).
pub fn plan(current: &[Pool], wanted: &[Pool], only: &[String]) -> Result<Vec<Change>, SyncError> {
    let in_scope = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    for o in only {
        if !current.iter().chain(wanted).any(|p| &p.name == o) {
            return Err(SyncError::UnknownOnly(o.clone()));
        }
    }
    let cur: BTreeMap<&str, &Pool> = current.iter().map(|p| (p.name.as_str(), p)).collect();
    let want: BTreeMap<&str, &Pool> = wanted.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut out = Vec::new();
    for (name, w) in &want {
        if !in_scope(name) {
            continue;
        }
        match cur.get(name) {
            None => out.push(Change::Create((*w).clone())),
            Some(c) if c != w => out.push(Change::Update {
                pool: (*w).clone(),
                fields: field_diff(c, w),
            }),
            Some(_) => {}
        }
    }
    for name in cur.keys() {
        if in_scope(name) && !want.contains_key(name) {
            out.push(Change::Delete(name.to_string()));
        }
    }
    Ok(out)
}

fn fields(p: &Pool) -> BTreeMap<String, String> {
    let v = serde_json::to_value(p).expect("a pool serialises");
    let mut out = BTreeMap::new();
    flatten("", &v, &mut out);
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn field_diff(old: &Pool, new: &Pool) -> Vec<String> {
    let (a, b) = (fields(old), fields(new));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or("(none)".to_string(), |s| short(s));
            format!("{k}: {} → {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

/// Templates are long; a diff line shows their start.
fn short(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

/// The plan as text, a line per change (`+` create, `~` update, `-` delete).
pub fn render(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes: the server's pools already match the file\n".into();
    }
    let mut out = String::new();
    for c in changes {
        match c {
            Change::Create(p) => out.push_str(&format!(
                "+ pool {} ({}, max {} launches)\n",
                p.name, p.launcher, p.max_launches
            )),
            Change::Update { pool, fields } => {
                out.push_str(&format!("~ pool {}\n", pool.name));
                for f in fields {
                    out.push_str(&format!("    {f}\n"));
                }
            }
            Change::Delete(n) => out.push_str(&format!("- pool {n}\n")),
        }
    }
    let (c, u, d) = changes.iter().fold((0, 0, 0), |(c, u, d), x| match x {
        Change::Create(_) => (c + 1, u, d),
        Change::Update { .. } => (c, u + 1, d),
        Change::Delete(_) => (c, u, d + 1),
    });
    out.push_str(&format!("{c} to create, {u} to update, {d} to delete\n"));
    out
}

/// The pools to write and the names to delete, for [`crate::store::Store::import_pools`].
pub fn split(changes: &[Change]) -> (Vec<Pool>, Vec<String>) {
    let mut up = Vec::new();
    let mut del = Vec::new();
    for c in changes {
        match c {
            Change::Create(p) | Change::Update { pool: p, .. } => up.push(p.clone()),
            Change::Delete(n) => del.push(n.clone()),
        }
    }
    (up, del)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::LauncherType;
    use crate::tags::parse_tags;

    fn pools() -> Vec<Pool> {
        let mut gpu = Pool::new("gpu", LauncherType::Docker);
        gpu.set.insert("image".into(), "flux:0.88".into());
        gpu.provides = parse_tags(&["gpu:A100,H100"]).unwrap();
        gpu.accepts = parse_tags(&["gpu:A100,H100"]).unwrap();
        vec![Pool::new("cpu", LauncherType::Process), gpu]
    }

    #[test]
    fn export_then_import_is_a_no_op() {
        let text = export(&pools(), &[]);
        let back = parse("pools.toml", &text).unwrap();
        assert_eq!(back, pools());
        assert!(plan(&pools(), &back, &[]).unwrap().is_empty());
        assert!(render(&[]).contains("no changes"));
        let only = export(&pools(), &["gpu".into()]);
        assert_eq!(parse("f", &only).unwrap().len(), 1);
    }

    #[test]
    fn plan_creates_updates_and_deletes_within_scope() {
        let mut wanted = pools();
        wanted[1].max_launches = 8;
        wanted.remove(0);
        wanted.push(Pool::new("new", LauncherType::Process));
        let changes = plan(&pools(), &wanted, &[]).unwrap();
        let text = render(&changes);
        assert!(
            text.contains("~ pool gpu\n    max_launches: 4 → 8\n"),
            "{text}"
        );
        assert!(
            text.contains("+ pool new (process, max 4 launches)"),
            "{text}"
        );
        assert!(text.contains("- pool cpu"), "{text}");
        assert!(
            text.ends_with("1 to create, 1 to update, 1 to delete\n"),
            "{text}"
        );
        // --only gpu: cpu is out of scope, so it is not deleted, and new is not created.
        let scoped = plan(&pools(), &wanted, &["gpu".into()]).unwrap();
        assert_eq!(scoped.len(), 1);
        assert!(matches!(&scoped[0], Change::Update { pool, .. } if pool.name == "gpu"));
        assert!(matches!(
            plan(&pools(), &wanted, &["nope".into()]),
            Err(SyncError::UnknownOnly(_))
        ));
        let (up, del) = split(&changes);
        assert_eq!((up.len(), del), (2, vec!["cpu".to_string()]));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let e = parse("p.toml", "[[pool]\nname=").unwrap_err().to_string();
        assert!(e.starts_with("p.toml: is not a pools file"), "{e}");
        let e = parse("p.toml", "[[pool]]\nname = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid pool name"), "{e}");
        let e = parse("p.toml", "[[pool]]\nname = \"a\"\ntype = \"lambda\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lambda"), "{e}");
        let e = parse("p.toml", "[[pool]]\nname = \"a\"\n[[pool]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("defined twice"), "{e}");
        let e = parse("p.toml", "[[pool]]\nname = \"a\"\nsizee = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sizee"), "{e}");
    }
}
