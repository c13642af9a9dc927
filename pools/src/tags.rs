//! Tags: `gpu:A100,H100` (one of these values), `gpu:true` (any value of the key). A job's
//! `requires`, a pool's `provides` and `accepts` are maps of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a tag key asks for or offers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TagValue {
    /// `true`: any value of the key (not the string "true").
    Any,
    /// One of these values.
    OneOf(BTreeSet<String>),
}

impl TagValue {
    /// Whether two values can meet: either is `Any`, or they share a value.
    pub fn overlaps(&self, other: &TagValue) -> bool {
        match (self, other) {
            (TagValue::Any, _) | (_, TagValue::Any) => true,
            (TagValue::OneOf(a), TagValue::OneOf(b)) => !a.is_disjoint(b),
        }
    }
}

impl fmt::Display for TagValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagValue::Any => f.write_str("true"),
            TagValue::OneOf(v) => f.write_str(&v.iter().cloned().collect::<Vec<_>>().join(",")),
        }
    }
}

/// A map of tags, by key.
pub type Tags = BTreeMap<String, TagValue>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag {0:?} has no key (fix: write KEY:VALUE[,VALUE…], e.g. gpu:A100)")]
    NoKey(String),
    #[error("tag {0:?} has no value (fix: write KEY:VALUE[,VALUE…], or KEY:true for any value)")]
    NoValue(String),
    #[error(
        "tag key {key:?} has a character other than letters, digits, '-', '_', '.' or '/' (fix: rename the key)"
    )]
    BadKey { key: String },
    #[error("tag {tag:?} has an empty value between commas (fix: remove the extra comma)")]
    EmptyValue { tag: String },
    #[error(
        "tag key {0:?} is given twice (fix: one flag per key, values joined by commas: {0}:A,B)"
    )]
    Duplicate(String),
    #[error("tag {tag:?} mixes true with values (fix: true alone means any value)")]
    MixedAny { tag: String },
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// One `KEY:V1,V2` (or `KEY=V1,V2`) flag.
pub fn parse_tag(tag: &str) -> Result<(String, TagValue), TagError> {
    let (key, values) = tag
        .split_once([':', '='])
        .ok_or_else(|| TagError::NoValue(tag.into()))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(TagError::NoKey(tag.into()));
    }
    if !valid_key(key) {
        return Err(TagError::BadKey { key: key.into() });
    }
    if values.trim().is_empty() {
        return Err(TagError::NoValue(tag.into()));
    }
    let parts: Vec<&str> = values.split(',').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(TagError::EmptyValue { tag: tag.into() });
    }
    if parts.contains(&"true") {
        if parts.len() > 1 {
            return Err(TagError::MixedAny { tag: tag.into() });
        }
        return Ok((key.into(), TagValue::Any));
    }
    Ok((
        key.into(),
        TagValue::OneOf(parts.into_iter().map(String::from).collect()),
    ))
}

/// Several flags (`--provides gpu:A100 --provides arch:x86`) as one map.
pub fn parse_tags<S: AsRef<str>>(flags: &[S]) -> Result<Tags, TagError> {
    let mut out = Tags::new();
    for f in flags {
        let (k, v) = parse_tag(f.as_ref())?;
        if out.insert(k.clone(), v).is_some() {
            return Err(TagError::Duplicate(k));
        }
    }
    Ok(out)
}

/// In JSON and TOML a value is a string, a list of strings, or `true`.
impl Serialize for TagValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TagValue::Any => s.serialize_bool(true),
            TagValue::OneOf(v) if v.len() == 1 => s.serialize_str(v.iter().next().expect("one")),
            TagValue::OneOf(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TagValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            One(String),
            Many(Vec<String>),
        }
        use serde::de::Error;
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(TagValue::Any),
            Raw::Bool(false) => Err(D::Error::custom(
                "a tag value of false means nothing; leave the key out",
            )),
            Raw::One(s) if s.is_empty() => Err(D::Error::custom("a tag value is empty")),
            Raw::One(s) => Ok(TagValue::OneOf(BTreeSet::from([s]))),
            Raw::Many(v) if v.is_empty() || v.iter().any(String::is_empty) => Err(
                D::Error::custom("a tag list is empty or holds an empty value"),
            ),
            Raw::Many(v) => Ok(TagValue::OneOf(v.into_iter().collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_of(v: &[&str]) -> TagValue {
        TagValue::OneOf(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn flags_parse() {
        assert_eq!(
            parse_tag("gpu:A100,H100").unwrap(),
            ("gpu".into(), one_of(&["A100", "H100"]))
        );
        assert_eq!(
            parse_tag("gpu=A100").unwrap(),
            ("gpu".into(), one_of(&["A100"]))
        );
        assert_eq!(
            parse_tag("gpu:true").unwrap(),
            ("gpu".into(), TagValue::Any)
        );
        assert_eq!(parse_tag("nvidia.com/gpu:1").unwrap().0, "nvidia.com/gpu");
    }

    #[test]
    fn malformed_tags_are_refused_with_a_fix() {
        for (bad, want) in [
            ("gpu", "has no value"),
            (":A100", "has no key"),
            ("gpu:", "has no value"),
            ("g pu:A100", "character other than"),
            ("gpu:A100,,H100", "empty value"),
            ("gpu:true,A100", "mixes true"),
        ] {
            let e = parse_tag(bad).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("fix:"), "{bad}: {e}");
        }
        let e = parse_tags(&["gpu:A100", "gpu:H100"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn json_and_toml_forms() {
        let t: Tags =
            serde_json::from_str(r#"{"gpu": ["A100", "H100"], "arch": "x86", "fast": true}"#)
                .unwrap();
        assert_eq!(t["gpu"], one_of(&["A100", "H100"]));
        assert_eq!(t["arch"], one_of(&["x86"]));
        assert_eq!(t["fast"], TagValue::Any);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"arch":"x86","fast":true,"gpu":["A100","H100"]}"#
        );
        assert!(serde_json::from_str::<Tags>(r#"{"gpu": false}"#).is_err());
        assert!(serde_json::from_str::<Tags>(r#"{"gpu": []}"#).is_err());
        assert!(serde_json::from_str::<Tags>(r#"{"gpu": ""}"#).is_err());
        let pool: BTreeMap<String, Tags> =
            toml::from_str("[provides]\ngpu = [\"A100\", \"H100\"]\nfast = true\n").unwrap();
        assert_eq!(pool["provides"]["gpu"], one_of(&["A100", "H100"]));
        assert_eq!(pool["provides"]["fast"], TagValue::Any);
    }
}
