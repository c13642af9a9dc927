//! Query and body values parsed as flux-restful 1.1.0 parses them (FastAPI on pydantic 2), and
//! the 422 it answers when one does not parse:
//! `{"detail": [{"type": …, "loc": ["query", name], "msg": …, "input": …}]}`.
//!
//! The accepted spellings are pydantic's lax-mode rules, checked against pydantic 2.14:
//! booleans are one of `1 0 true false yes no on off t f y n` in any case (no surrounding
//! space); integers may have surrounding space, a sign, `_` between digits and a fraction of
//! zeros (`5.00`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

/// Where a value came from, the first element of its `loc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    Query,
    Body,
}

impl Loc {
    fn name(self) -> &'static str {
        match self {
            Loc::Query => "query",
            Loc::Body => "body",
        }
    }
}

/// One value that did not parse, as FastAPI reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// pydantic's error type: `int_parsing`, `bool_parsing`, `dict_type`, `json_invalid`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// `["query", name]`, `["body"]`, or `["body", offset]` for JSON that does not parse.
    #[schema(value_type = Vec<Object>)]
    pub loc: Vec<Value>,
    pub msg: String,
    #[schema(value_type = Object)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub ctx: Option<Value>,
}

/// The 422 body: `{"detail": [FieldError, …]}`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ValidationErrors {
    pub detail: Vec<FieldError>,
}

impl FieldError {
    fn new(kind: &str, loc: Vec<Value>, msg: &str, input: Value) -> FieldError {
        FieldError {
            kind: kind.into(),
            loc,
            msg: msg.into(),
            input,
            ctx: None,
        }
    }

    fn at(loc: Loc, name: &str) -> Vec<Value> {
        vec![json!(loc.name()), json!(name)]
    }

    /// A value that is not an integer.
    pub fn int(loc: Loc, name: &str, input: &Value) -> FieldError {
        let at = Self::at(loc, name);
        match input {
            Value::String(_) => FieldError::new(
                "int_parsing",
                at,
                "Input should be a valid integer, unable to parse string as an integer",
                input.clone(),
            ),
            Value::Number(_) => FieldError::new(
                "int_from_float",
                at,
                "Input should be a valid integer, got a number with a fractional part",
                input.clone(),
            ),
            _ => FieldError::new(
                "int_type",
                at,
                "Input should be a valid integer",
                input.clone(),
            ),
        }
    }

    /// A value that is not a boolean.
    pub fn bool(loc: Loc, name: &str, input: &Value) -> FieldError {
        let at = Self::at(loc, name);
        match input {
            Value::String(_) | Value::Number(_) => FieldError::new(
                "bool_parsing",
                at,
                "Input should be a valid boolean, unable to interpret input",
                input.clone(),
            ),
            _ => FieldError::new(
                "bool_type",
                at,
                "Input should be a valid boolean",
                input.clone(),
            ),
        }
    }

    /// A value that is not a string.
    pub fn string(loc: Loc, name: &str, input: &Value) -> FieldError {
        FieldError::new(
            "string_type",
            Self::at(loc, name),
            "Input should be a valid string",
            input.clone(),
        )
    }

    /// A JSON body that is not an object (the body is the environment dict).
    pub fn body_not_a_dict(input: Value) -> FieldError {
        FieldError::new(
            "dict_type",
            vec![json!("body")],
            "Input should be a valid dictionary",
            input,
        )
    }

    /// A body that is not JSON: `offset` is where parsing stopped, in characters.
    pub fn body_not_json(offset: usize, reason: String) -> FieldError {
        FieldError {
            ctx: Some(json!({ "error": reason })),
            ..FieldError::new(
                "json_invalid",
                vec![json!("body"), json!(offset)],
                "JSON decode error",
                json!({}),
            )
        }
    }

    /// For people (the web form, strict mode): which parameter, what it must be, what came.
    pub fn describe(&self) -> String {
        let name = self.loc.get(1).and_then(Value::as_str);
        let expected = match self.kind.as_str() {
            k if k.starts_with("int") => "an integer",
            k if k.starts_with("bool") => "true or false",
            "string_type" => "a string",
            "dict_type" => "key/value pairs (a JSON object)",
            _ => return format!("The request body is not valid JSON: {}", self.ctx_error()),
        };
        let found = match &self.input {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        match name {
            Some(n) => format!("Parameter {n} must be {expected}, found {found}"),
            None => format!("The request body must be {expected}, found {found}"),
        }
    }

    fn ctx_error(&self) -> String {
        self.ctx
            .as_ref()
            .and_then(|c| c["error"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// A boolean as pydantic reads a string: one of its twelve words, in any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "t" | "y" => Some(true),
        "0" | "false" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// A boolean from a JSON value (the legacy whole-body submit): a bool, 0/1, or a word.
pub fn bool_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => parse_bool(s),
        _ => None,
    }
}

/// Digits with single `_` between them (Python's integer literal rule).
fn digits(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() || !b[b.len() - 1].is_ascii_digit() {
        return None;
    }
    let mut n: i64 = 0;
    let mut prev_underscore = false;
    for &c in b {
        match c {
            b'_' if prev_underscore => return None,
            b'_' => prev_underscore = true,
            b'0'..=b'9' => {
                prev_underscore = false;
                // Python integers have no bound; saturate so a huge count meets our limit check.
                n = n.saturating_mul(10).saturating_add((c - b'0') as i64);
            }
            _ => return None,
        }
    }
    Some(n)
}

fn signed(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(rest) => digits(rest).map(|n| -n),
        None => digits(s.strip_prefix('+').unwrap_or(s)),
    }
}

/// An integer as pydantic reads a string: `" +1_000 "` and `"5.00"` are fine, `"5.5"`, `"1e3"`
/// and `""` are not.
pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    match s.split_once('.') {
        Some((whole, frac)) if !frac.is_empty() && frac.bytes().all(|c| c == b'0') => signed(whole),
        Some(_) => None,
        None => signed(s),
    }
}

/// An integer from a JSON value (the legacy whole-body submit): a whole number or a string.
pub fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.is_finite())
                .map(|f| f as i64)
        }),
        Value::String(s) => parse_int(s),
        _ => None,
    }
}

/// An integer as Python's `int()` reads a string (flux-restful reads `limit`, `start` and
/// `length` this way and ignores what does not parse).
pub fn python_int(s: &str) -> Option<i64> {
    signed(s.trim())
}

/// Where serde_json stopped, as a character offset into `text` (what Python's JSON error
/// position counts).
pub fn json_error_offset(text: &str, e: &serde_json::Error) -> usize {
    let (line, column) = (e.line(), e.column());
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return offset + l.chars().take(column.saturating_sub(1)).count();
        }
        offset += l.chars().count();
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_pydantics_twelve_words_in_any_case() {
        for t in ["1", "true", "TRUE", "yes", "Yes", "on", "t", "T", "y", "Y"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "false", "False", "no", "off", "OFF", "f", "n", "N"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", " true", "true ", "2", "1.0", "maybe", "notabool"] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn integers_follow_pydantics_lax_rules() {
        for (s, n) in [
            ("5", 5),
            (" 5", 5),
            ("5 ", 5),
            ("+5", 5),
            ("-5", -5),
            ("05", 5),
            ("1_000", 1000),
            ("5.0", 5),
            ("5.00", 5),
            ("\t5\n", 5),
        ] {
            assert_eq!(parse_int(s), Some(n), "{s:?}");
        }
        for bad in [
            "", "abc", "5.5", "5.", ".0", "1e3", "0x10", "_5", "5_", "1__0", "- 5", "+-5",
        ] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
        assert_eq!(parse_int("99999999999999999999999"), Some(i64::MAX));
        assert_eq!(python_int(" 7 "), Some(7));
        assert_eq!(python_int("5.0"), None);
    }

    #[test]
    fn errors_have_fastapis_shape() {
        let e = FieldError::int(Loc::Query, "num_tasks", &json!("abc"));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "int_parsing", "loc": ["query", "num_tasks"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": "abc"})
        );
        assert_eq!(
            e.describe(),
            "Parameter num_tasks must be an integer, found \"abc\""
        );
        let text = "{\n  bad";
        let err = serde_json::from_str::<Value>(text).unwrap_err();
        assert_eq!(json_error_offset(text, &err), 4);
    }
}
