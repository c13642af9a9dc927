//! CURVE certificates in the format `flux keygen` writes (ZPL text, Z85 keys).
//!
//! ```text
//! #  ZeroMQ CURVE **Secret** Certificate
//! #  DO NOT DISTRIBUTE
//!
//! metadata
//!     name = "mc-0"
//!     keygen.hostname = "build-host"
//! curve
//!     public-key = "<40 Z85 characters>"
//!     secret-key = "<40 Z85 characters>"
//! ```
//!
//! The secret key never appears in `Debug` output or in an error message.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::Error;

/// Length of a Z85-encoded 32-byte CURVE key.
pub const Z85_KEY_LEN: usize = 40;

/// A CURVE keypair with its certificate metadata.
#[derive(Clone)]
pub struct CurveCert {
    /// `metadata` entries in file order; `name` is what Flux shows in overlay logs.
    metadata: Vec<(String, String)>,
    public: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for CurveCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveCert")
            .field("metadata", &self.metadata)
            .field("public_key", &self.public_key())
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

fn cert_err(reason: impl Into<String>) -> Error {
    Error::Cert {
        reason: reason.into(),
    }
}

impl CurveCert {
    /// A fresh keypair from the operating system's randomness.
    ///
    /// `name` is the certificate's `metadata.name`; `keygen.*` entries record where and when it
    /// was made, as `flux keygen` does.
    pub fn generate(name: &str) -> Result<Self, Error> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut())
            .map_err(|e| cert_err(format!("the operating system gave no randomness: {e}")))?;
        let public = PublicKey::from(&StaticSecret::from(*secret)).to_bytes();
        let mut metadata = vec![("name".to_string(), name.to_string())];
        metadata.push(("keygen.hostname".into(), local_hostname()));
        metadata.push((
            "keygen.minicluster-version".into(),
            env!("CARGO_PKG_VERSION").into(),
        ));
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        metadata.push(("keygen.time".into(), now.trim_end_matches('Z').to_string()));
        metadata.push(("keygen.userid".into(), current_uid()));
        Ok(CurveCert {
            metadata,
            public,
            secret,
        })
    }

    /// Parses certificate text (ZPL) and checks that the keys are valid and belong together.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let zpl = parse_zpl(text)?;
        let get = |section: &str, key: &str| {
            zpl.iter()
                .find(|(s, k, _)| s == section && k == key)
                .map(|(_, _, v)| v.as_str())
        };
        if !zpl.iter().any(|(s, _, _)| s == "curve") {
            return Err(cert_err(
                "there is no `curve` section; a certificate has `curve` with `public-key` and `secret-key`",
            ));
        }
        let public_text =
            get("curve", "public-key").ok_or_else(|| cert_err("`curve.public-key` is missing"))?;
        let secret_text = get("curve", "secret-key").ok_or_else(|| {
            cert_err(
                "`curve.secret-key` is missing (a public-only certificate cannot run a broker)",
            )
        })?;
        let public = decode_key("public-key", public_text)?;
        let secret = Zeroizing::new(decode_key("secret-key", secret_text)?);
        let derived = PublicKey::from(&StaticSecret::from(*secret)).to_bytes();
        if derived != public {
            return Err(cert_err(
                "`curve.public-key` does not belong to `curve.secret-key` (the keys are from different pairs)",
            ));
        }
        let metadata = zpl
            .into_iter()
            .filter(|(s, _, _)| s == "metadata")
            .map(|(_, k, v)| (k, v))
            .collect();
        Ok(CurveCert {
            metadata,
            public,
            secret,
        })
    }

    /// The certificate of a MiniCluster: its `spec.flux.curveCert` when given, else a fresh
    /// keypair named after rank 0 (`<name>-0`).
    pub fn for_minicluster(mc: &crate::MiniCluster) -> Result<Self, Error> {
        match mc.spec.flux.as_ref().and_then(|f| f.curve_cert.as_deref()) {
            Some(own) => CurveCert::parse(own),
            None => CurveCert::generate(&format!(
                "{}-0",
                mc.metadata.name.as_deref().unwrap_or_default()
            )),
        }
    }

    /// Reads and parses a certificate file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            io: e,
        })?;
        CurveCert::parse(&text).map_err(|e| match e {
            Error::Cert { reason } => cert_err(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// The certificate text, in the layout `flux keygen` writes.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "#  ZeroMQ CURVE **Secret** Certificate\n#  DO NOT DISTRIBUTE\n\nmetadata\n",
        );
        for (k, v) in &self.metadata {
            out.push_str(&format!("    {k} = \"{}\"\n", zpl_escape(v)));
        }
        out.push_str("curve\n");
        out.push_str(&format!("    public-key = \"{}\"\n", self.public_key()));
        out.push_str(&format!(
            "    secret-key = \"{}\"\n",
            z85::encode(self.secret.as_ref())
        ));
        out
    }

    /// Writes the certificate atomically (temporary file + rename) and owner-only (mode 0600),
    /// because Flux refuses a certificate that group or others can read.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            io: e,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            file_name.as_deref().unwrap_or("curve.cert"),
            std::process::id()
        ));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(self.to_text().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    /// The Z85 public key.
    pub fn public_key(&self) -> String {
        z85::encode(self.public)
    }

    /// The raw secret key, for handing to a CURVE implementation.
    pub fn secret_key_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The certificate's `metadata.name`, if any.
    pub fn name(&self) -> Option<&str> {
        self.metadata(|k| k == "name")
    }

    fn metadata(&self, pred: impl Fn(&str) -> bool) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| pred(k))
            .map(|(_, v)| v.as_str())
    }
}

/// The uid this process runs as (the owner of `/proc/self`), without unsafe FFI.
fn current_uid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_default()
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn zpl_escape(v: &str) -> String {
    // ZPL has no escapes: a value cannot hold a double quote, so replace it.
    v.replace('"', "'")
}

fn decode_key(field: &str, text: &str) -> Result<[u8; 32], Error> {
    let len = text.chars().count();
    if len != Z85_KEY_LEN {
        return Err(cert_err(format!(
            "`curve.{field}` has {len} characters; a Z85 CURVE key has exactly {Z85_KEY_LEN}"
        )));
    }
    let bytes = z85::decode(text).map_err(|_| {
        cert_err(format!(
            "`curve.{field}` is not valid Z85 (it has characters outside the Z85 alphabet)"
        ))
    })?;
    bytes
        .try_into()
        .map_err(|_| cert_err(format!("`curve.{field}` does not decode to 32 bytes")))
}

/// (section, key, value) triples of a two-level ZPL document.
fn parse_zpl(text: &str) -> Result<Vec<(String, String, String)>, Error> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if !indented {
            let name = trimmed.split(['=', '#']).next().unwrap_or("").trim();
            if !is_zpl_name(name) {
                return Err(cert_err(format!(
                    "line {line_no}: expected a section name such as `curve` or `metadata`"
                )));
            }
            section = Some(name.to_string());
            continue;
        }
        let Some(sec) = &section else {
            return Err(cert_err(format!(
                "line {line_no}: an indented entry comes before any section"
            )));
        };
        let Some((key, rest)) = trimmed.split_once('=') else {
            return Err(cert_err(format!(
                "line {line_no}: expected `name = \"value\"` inside `{sec}`"
            )));
        };
        let key = key.trim();
        if !is_zpl_name(key) {
            return Err(cert_err(format!(
                "line {line_no}: `{key}` is not a valid ZPL name"
            )));
        }
        let value = parse_zpl_value(rest.trim()).ok_or_else(|| {
            // The value may be a secret key: say where, never what.
            cert_err(format!(
                "line {line_no}: the value of `{key}` has an unterminated quote"
            ))
        })?;
        out.push((sec.clone(), key.to_string(), value));
    }
    Ok(out)
}

fn is_zpl_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '$' | '-' | '_' | '@' | '.' | '&' | '+' | '/')
        })
}

fn parse_zpl_value(rest: &str) -> Option<String> {
    match rest.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let body = &rest[1..];
            let end = body.find(q)?;
            Some(body[..end].to_string())
        }
        _ => Some(
            rest.split(|c: char| c.is_whitespace() || c == '#')
                .next()
                .unwrap_or("")
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A pair produced by `flux keygen`, published in flux-operator's custom-config example.
    const FLUX_KEYGEN_CERT: &str = "metadata\n    name = \"flux-cert-generator\"\n    keygen.hostname = \"flux-sample-0\"\ncurve\n    public-key = \"}D{Y3<amLLl*TIt>@b*umPD-nBr#I}[PnV!lZBkW\"\n    secret-key = \"5khD%TixeW<j<6ssPNG>s<nY1E}5)fyk@TI)g8Xu\"\n";
    const SECRET: &str = "5khD%TixeW<j<6ssPNG>s<nY1E}5)fyk@TI)g8Xu";

    #[test]
    fn parses_a_flux_keygen_cert_and_checks_the_pair() {
        let c = CurveCert::parse(FLUX_KEYGEN_CERT).unwrap();
        assert_eq!(c.public_key(), "}D{Y3<amLLl*TIt>@b*umPD-nBr#I}[PnV!lZBkW");
        assert_eq!(c.name(), Some("flux-cert-generator"));
    }

    #[test]
    fn generated_cert_round_trips_in_keygen_layout() {
        let c = CurveCert::generate("mc-0").unwrap();
        let text = c.to_text();
        assert!(text.starts_with("#  ZeroMQ CURVE **Secret** Certificate\n"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"metadata"));
        assert!(lines.contains(&"    name = \"mc-0\""));
        assert!(lines.contains(&"curve"));
        let pk = lines
            .iter()
            .find(|l| l.starts_with("    public-key = \""))
            .unwrap();
        assert_eq!(pk.len(), "    public-key = \"\"".len() + Z85_KEY_LEN);
        let back = CurveCert::parse(&text).unwrap();
        assert_eq!(back.public_key(), c.public_key());
        assert_eq!(back.secret_key_bytes(), c.secret_key_bytes());
        assert_eq!(back.to_text(), text);
    }

    #[test]
    fn two_generated_certs_differ() {
        let a = CurveCert::generate("a").unwrap();
        let b = CurveCert::generate("a").unwrap();
        assert_ne!(a.public_key(), b.public_key());
    }

    #[test]
    fn mismatched_pair_is_refused_without_printing_the_secret() {
        let other = CurveCert::generate("x").unwrap().public_key();
        let text = FLUX_KEYGEN_CERT.replace("}D{Y3<amLLl*TIt>@b*umPD-nBr#I}[PnV!lZBkW", &other);
        let e = CurveCert::parse(&text).unwrap_err().to_string();
        assert!(e.contains("does not belong"), "{e}");
        assert!(!e.contains(SECRET));
    }

    #[test]
    fn malformed_certs_say_what_is_wrong_and_hide_the_secret() {
        let cases = [
            (
                FLUX_KEYGEN_CERT.replace(SECRET, &SECRET[1..]),
                "has 39 characters",
            ),
            (
                FLUX_KEYGEN_CERT.replace(SECRET, &SECRET.replace('5', "\\")),
                "outside the Z85 alphabet",
            ),
            (
                FLUX_KEYGEN_CERT.replace("    secret-key", "    other"),
                "secret-key` is missing",
            ),
            (
                "metadata\n    name = \"x\"\n".to_string(),
                "no `curve` section",
            ),
            (
                FLUX_KEYGEN_CERT.replace(&format!("{SECRET}\""), SECRET),
                "unterminated quote",
            ),
            ("    public-key = \"x\"\n".to_string(), "before any section"),
            (String::new(), "no `curve` section"),
        ];
        for (text, want) in cases {
            let e = CurveCert::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?}, got {e}");
            assert!(!e.contains(&SECRET[1..]), "secret leaked: {e}");
        }
        let dbg = format!("{:?}", CurveCert::parse(FLUX_KEYGEN_CERT).unwrap());
        assert!(!dbg.contains(SECRET) && dbg.contains("redacted"));
    }

    #[test]
    fn write_is_owner_only_and_atomic() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.cert");
        let c = CurveCert::generate("mc-0").unwrap();
        c.write(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Overwriting replaces the file and leaves no temporary behind.
        CurveCert::generate("mc-0").unwrap().write(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(CurveCert::read(&path).is_ok());
    }
}
