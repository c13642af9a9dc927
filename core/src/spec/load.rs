//! Reading MiniCluster YAML: size and encoding limits, multi-document files, unknown fields.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::types::MiniCluster;
use crate::Error;

/// Largest input accepted. Real MiniCluster YAML is a few KiB; this bounds memory and time.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

const API_VERSION: &str = "flux-framework.org/v1alpha2";

/// The MiniClusters of one input, with what was noticed while reading them.
#[derive(Debug)]
pub struct Loaded {
    /// Every MiniCluster document, in file order.
    pub clusters: Vec<LoadedCluster>,
    /// Documents that are not MiniClusters (for example a PersistentVolume beside one).
    pub skipped: Vec<String>,
}

/// One MiniCluster document.
#[derive(Debug)]
pub struct LoadedCluster {
    pub cluster: MiniCluster,
    /// Fields the MiniCluster schema does not have, as paths (`spec.containers[0].foo`).
    pub unknown_fields: Vec<String>,
}

fn input_err(source_name: &str, reason: impl Into<String>) -> Error {
    Error::Input {
        source_name: source_name.to_string(),
        reason: reason.into(),
    }
}

/// Reads a file (at most [`MAX_INPUT_BYTES`]) and loads its MiniClusters.
pub fn load_file(path: &Path) -> Result<Loaded, Error> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        path: name.clone(),
        io: e,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Io {
            path: name.clone(),
            io: e,
        })?;
    load_bytes(&name, &bytes)
}

/// Loads the MiniClusters of a YAML text (one or more documents).
pub fn load_bytes(source_name: &str, bytes: &[u8]) -> Result<Loaded, Error> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(input_err(
            source_name,
            format!(
                "is larger than {} MiB; a MiniCluster spec is a few KiB, is this the right file?",
                MAX_INPUT_BYTES / (1024 * 1024)
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        input_err(
            source_name,
            format!(
                "is not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    if let Some(line) = flow_nesting_beyond(text, MAX_FLOW_DEPTH) {
        return Err(input_err(
            source_name,
            format!(
                "nests brackets deeper than {MAX_FLOW_DEPTH} levels (line {line}); a MiniCluster spec never does"
            ),
        ));
    }
    let mut loaded = Loaded {
        clusters: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let value = serde_norway::Value::deserialize(doc)
            .map_err(|e| input_err(source_name, format!("is not valid YAML: {e}")))?;
        match value {
            serde_norway::Value::Null => continue,
            serde_norway::Value::Mapping(_) => {}
            _ => {
                return Err(input_err(
                    source_name,
                    format!("document {n} is not a mapping; expected a MiniCluster object"),
                ));
            }
        }
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        if kind != "MiniCluster" {
            let what = if kind.is_empty() {
                "an object without `kind`".to_string()
            } else {
                format!("a {kind}")
            };
            loaded
                .skipped
                .push(format!("document {n} is {what}, not a MiniCluster"));
            continue;
        }
        if api_version != API_VERSION {
            return Err(input_err(
                source_name,
                format!(
                    "document {n}: apiVersion {api_version:?} is not supported; use apiVersion: {API_VERSION}"
                ),
            ));
        }
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| {
            // kube's generated type checks apiVersion and kind itself, then ignores them.
            let p = format_path(&path);
            if p != "apiVersion" && p != "kind" {
                unknown.push(p);
            }
        };
        let de = serde_ignored::Deserializer::new(value, &mut record);
        let cluster: MiniCluster = serde_path_to_error::deserialize(de).map_err(|e| {
            input_err(
                source_name,
                format!(
                    "document {n}: {}: {}",
                    dotted(&e.path().to_string()),
                    e.inner()
                ),
            )
        })?;
        loaded.clusters.push(LoadedCluster {
            cluster,
            unknown_fields: unknown,
        });
    }
    if loaded.clusters.is_empty() {
        let reason = if loaded.skipped.is_empty() {
            format!(
                "is empty; expected a MiniCluster (apiVersion: {API_VERSION}, kind: MiniCluster)"
            )
        } else {
            format!("has no MiniCluster: {}", loaded.skipped.join("; "))
        };
        return Err(input_err(source_name, reason));
    }
    Ok(loaded)
}

/// Deepest `[`/`{` nesting accepted. The YAML scanner slows down quadratically with flow
/// nesting (minutes for 100,000 levels), so deeper input is refused before it is parsed.
const MAX_FLOW_DEPTH: usize = 64;

/// The line where flow collections nest deeper than `max`, if they do. Quoted text and
/// comments are skipped; brackets in block scalars are counted, which errs on the safe side.
fn flow_nesting_beyond(text: &str, max: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') if prev.is_whitespace() => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > max {
                        return Some(n + 1);
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    None
}

/// `spec.containers[0].foo` from serde_ignored's path.
fn format_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", format_path(parent)),
        Path::Map { parent, key } => {
            let p = format_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => format_path(parent),
    }
}

/// serde_path_to_error prints `.` for the root; say `document` there instead.
fn dotted(path: &str) -> &str {
    if path == "." { "document" } else { path }
}
