//! Flux hostlists (RFC 29): `mc-[0-3,7],login1` is `mc-0 mc-1 mc-2 mc-3 mc-7 login1`.
//!
//! A hostlist is an ordered list (order is rank order in Flux), so encoding keeps the order and
//! only merges neighbours: `decode(encode(list)) == list` for every list of valid hostnames.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Largest number of hosts a hostlist may expand to, so `mc-[0-99999999999]` cannot eat memory.
pub const MAX_HOSTS: usize = 1 << 22;

/// An ordered list of hostnames.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hostlist {
    hosts: Vec<String>,
}

/// One `lo-hi` run inside brackets; numbers are printed zero-padded to `width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    lo: u64,
    hi: u64,
    width: usize,
}

/// Hosts that share a prefix and suffix and differ in one number: `prefix[runs]suffix`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Group<'a> {
    prefix: &'a str,
    suffix: &'a str,
    runs: Vec<Run>,
}

fn err(input: &str, why: impl fmt::Display) -> Error {
    Error::Hostlist {
        input: truncate(input),
        reason: why.to_string(),
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Hostlist {
    /// A hostlist of the given hostnames, in order.
    pub fn from_hosts<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Hostlist {
            hosts: hosts.into_iter().map(Into::into).collect(),
        }
    }

    /// `prefix[0-(count-1)]`: the hostnames of a MiniCluster named by `prefix` without the index.
    pub fn range(prefix: &str, count: usize) -> Self {
        Hostlist::from_hosts((0..count).map(|i| format!("{prefix}{i}")))
    }

    /// Parses RFC 29 syntax and expands it.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let mut hosts = Vec::new();
        if input.trim().is_empty() {
            return Ok(Hostlist { hosts });
        }
        for item in split_top_level(input)? {
            let item = item.trim();
            if item.is_empty() {
                return Err(err(
                    input,
                    "empty entry (two commas in a row, or a trailing comma)",
                ));
            }
            expand_item(input, item, &mut hosts)?;
        }
        Ok(Hostlist { hosts })
    }

    /// The hostnames, in order.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True when there are no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Index of `host` in the list (its rank), if present.
    pub fn position(&self, host: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h == host)
    }

    /// The compact RFC 29 form.
    pub fn encode(&self) -> String {
        let mut groups: Vec<Group<'_>> = Vec::new();
        for host in &self.hosts {
            let (prefix, digits, suffix) = split_number(host);
            let Some(digits) = digits else {
                groups.push(Group {
                    prefix: host,
                    suffix: "",
                    runs: Vec::new(),
                });
                continue;
            };
            // Digit strings longer than u64 are kept verbatim as plain names.
            let Ok(n) = digits.parse::<u64>() else {
                groups.push(Group {
                    prefix: host,
                    suffix: "",
                    runs: Vec::new(),
                });
                continue;
            };
            let width = digits.len();
            if let Some(g) = groups.last_mut()
                && !g.runs.is_empty()
                && g.prefix == prefix
                && g.suffix == suffix
            {
                let last = g.runs.last_mut().expect("runs is not empty");
                if last.hi.checked_add(1) == Some(n) && format!("{n:0w$}", w = last.width) == digits
                {
                    last.hi = n;
                } else {
                    g.runs.push(Run {
                        lo: n,
                        hi: n,
                        width,
                    });
                }
                continue;
            }
            groups.push(Group {
                prefix,
                suffix,
                runs: vec![Run {
                    lo: n,
                    hi: n,
                    width,
                }],
            });
        }
        let mut out = String::new();
        for (i, g) in groups.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(g.prefix);
            match g.runs.as_slice() {
                [] => {}
                [r] if r.lo == r.hi => out.push_str(&format!("{:0w$}", r.lo, w = r.width)),
                runs => {
                    out.push('[');
                    for (j, r) in runs.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        out.push_str(&format!("{:0w$}", r.lo, w = r.width));
                        if r.hi != r.lo {
                            out.push_str(&format!("-{:0w$}", r.hi, w = r.width));
                        }
                    }
                    out.push(']');
                }
            }
            out.push_str(g.suffix);
        }
        out
    }
}

impl fmt::Display for Hostlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for Hostlist {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Hostlist::parse(s)
    }
}

/// Splits at commas that are not inside brackets.
fn split_top_level(input: &str) -> Result<Vec<&str>, Error> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '[' if depth > 0 => return Err(err(input, "nested '[' is not allowed")),
            '[' => depth = 1,
            ']' if depth == 0 => return Err(err(input, "']' without a matching '['")),
            ']' => depth = 0,
            ',' if depth == 0 => {
                items.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(err(input, "'[' is never closed"));
    }
    items.push(&input[start..]);
    Ok(items)
}

fn expand_item(input: &str, item: &str, hosts: &mut Vec<String>) -> Result<(), Error> {
    let Some(open) = item.find('[') else {
        check_name_chars(input, item)?;
        hosts.push(item.to_string());
        return Ok(());
    };
    let close = item[open..]
        .find(']')
        .map(|c| open + c)
        .expect("brackets balanced");
    let (prefix, inner, suffix) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
    if suffix.contains('[') {
        return Err(err(
            input,
            "only one bracketed range per hostname is supported",
        ));
    }
    check_name_chars(input, prefix)?;
    check_name_chars(input, suffix)?;
    if inner.is_empty() {
        return Err(err(input, "empty brackets '[]'"));
    }
    for part in inner.split(',') {
        let (lo_s, hi_s) = part.split_once('-').unwrap_or((part, part));
        let lo = parse_number(input, lo_s)?;
        let hi = parse_number(input, hi_s)?;
        if hi < lo {
            return Err(err(input, format!("range '{part}' runs backwards")));
        }
        let count = usize::try_from(hi - lo + 1).unwrap_or(usize::MAX);
        if hosts.len().saturating_add(count) > MAX_HOSTS {
            return Err(err(
                input,
                format!("expands to more than {MAX_HOSTS} hosts"),
            ));
        }
        let width = lo_s.len();
        for n in lo..=hi {
            hosts.push(format!("{prefix}{n:0width$}{suffix}"));
        }
    }
    Ok(())
}

fn parse_number(input: &str, s: &str) -> Result<u64, Error> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(input, format!("'{s}' is not a number in a range")));
    }
    s.parse()
        .map_err(|_| err(input, format!("'{s}' is too large for a range")))
}

fn check_name_chars(input: &str, s: &str) -> Result<(), Error> {
    match s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        Some(c) => Err(err(input, format!("hostnames cannot contain {c:?}"))),
        None => Ok(()),
    }
}

/// Splits `mc-12x` into (`mc-`, Some(`12`), `x`): the last run of digits is the host's number.
fn split_number(host: &str) -> (&str, Option<&str>, &str) {
    let bytes = host.as_bytes();
    let Some(end) = bytes.iter().rposition(u8::is_ascii_digit).map(|i| i + 1) else {
        return (host, None, "");
    };
    let start = bytes[..end]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |i| i + 1);
    (&host[..start], Some(&host[start..end]), &host[end..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hl(s: &str) -> Vec<String> {
        Hostlist::parse(s).unwrap().hosts().to_vec()
    }

    #[test]
    fn expands_rfc29_examples() {
        assert_eq!(
            hl("mc-[0-3,7],login1"),
            ["mc-0", "mc-1", "mc-2", "mc-3", "mc-7", "login1"]
        );
        assert_eq!(hl("node[01-03]"), ["node01", "node02", "node03"]);
        assert_eq!(hl("n[9-11]-ib"), ["n9-ib", "n10-ib", "n11-ib"]);
        assert_eq!(hl("foo"), ["foo"]);
        assert!(Hostlist::parse("").unwrap().is_empty());
        assert!(Hostlist::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn encodes_compactly() {
        assert_eq!(Hostlist::range("mc-", 4).encode(), "mc-[0-3]");
        assert_eq!(Hostlist::range("mc-", 1).encode(), "mc-0");
        let l = Hostlist::from_hosts(["mc-0", "mc-1", "mc-2", "mc-3", "mc-7", "login1"]);
        assert_eq!(l.encode(), "mc-[0-3,7],login1");
        let l = Hostlist::from_hosts(["node01", "node02", "node10"]);
        assert_eq!(l.encode(), "node[01-02,10]");
        let l = Hostlist::from_hosts(["n3", "n1", "n2"]);
        assert_eq!(l.encode(), "n[3,1-2]");
        assert_eq!(Hostlist::range("mc-", 100_000).encode(), "mc-[0-99999]");
    }

    #[test]
    fn counts_and_positions() {
        let l = Hostlist::parse("mc-[0-99999]").unwrap();
        assert_eq!(l.len(), 100_000);
        assert_eq!(l.position("mc-42"), Some(42));
        assert_eq!(l.position("mc-100000"), None);
    }

    #[test]
    fn rejects_bad_syntax_with_reason() {
        for (input, why) in [
            ("mc-[0-3", "never closed"),
            ("mc-0-3]", "without a matching"),
            ("mc-[3-1]", "backwards"),
            ("mc-[a-b]", "not a number"),
            ("mc-[]", "empty brackets"),
            ("a,,b", "empty entry"),
            ("mc-[[0]]", "nested"),
            ("mc-[0-99999999999]", "more than"),
            ("a b", "cannot contain"),
        ] {
            let e = Hostlist::parse(input).unwrap_err().to_string();
            assert!(e.contains(why), "{input}: {e}");
        }
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            ("[a-c]{1,2}-?", 0u64..40).prop_map(|(p, n)| format!("{p}{n}")),
            ("[a-c]{1,2}", 0u64..40).prop_map(|(p, n)| format!("{p}{n:03}")),
            ("[a-c]{1,2}", 0u64..20, "-[a-z]{1,2}").prop_map(|(p, n, s)| format!("{p}{n}{s}")),
            "[a-z]{1,4}",
        ]
    }

    proptest! {
        #[test]
        fn decode_encode_is_identity(hosts in proptest::collection::vec(host(), 0..40)) {
            let list = Hostlist::from_hosts(hosts.clone());
            let encoded = list.encode();
            let back = Hostlist::parse(&encoded).unwrap();
            prop_assert_eq!(back.hosts(), hosts.as_slice(), "encoded as {}", encoded);
        }

        #[test]
        fn contiguous_ranges_stay_one_group(prefix in "[a-z]{1,5}-", n in 1usize..500) {
            let encoded = Hostlist::range(&prefix, n).encode();
            prop_assert!(!encoded.contains(','), "{}", encoded);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Hostlist::parse(&s);
        }
    }
}
