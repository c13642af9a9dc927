//! Flux job ids (FLUIDs: 40-bit ms timestamp, 14-bit generator, 10-bit sequence) and the text
//! forms Flux prints and accepts: decimal, F58 (`ƒ28u15Vy`, ASCII `f28u15Vy`), hex (`0x…`),
//! dothex (`000a.1200.0000.0000`) and the KVS directory form (`job.000a.1200.0000.0000`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

const F58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const F58_PREFIX: char = 'ƒ';

/// A Flux job id. On the wire it is a JSON integer; `Display` prints the F58 form the CLI uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl JobId {
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// `ƒ28u15Vy`
    pub fn f58(self) -> String {
        format!("{F58_PREFIX}{}", self.f58_digits())
    }

    /// `f28u15Vy`: the ASCII form, used in shell service names (`0-shell-f28u15Vy`).
    pub fn f58_ascii(self) -> String {
        format!("f{}", self.f58_digits())
    }

    fn f58_digits(self) -> String {
        let mut n = self.0;
        let mut digits = Vec::with_capacity(11);
        loop {
            digits.push(F58_ALPHABET[(n % 58) as usize]);
            n /= 58;
            if n == 0 {
                break;
            }
        }
        digits.reverse();
        String::from_utf8(digits).expect("alphabet is ASCII")
    }

    /// `0xa12000000`
    pub fn hex(self) -> String {
        format!("{:#x}", self.0)
    }

    /// `0000.000a.1200.0000`: four 16-bit groups, most significant first.
    pub fn dothex(self) -> String {
        let n = self.0;
        format!(
            "{:04x}.{:04x}.{:04x}.{:04x}",
            (n >> 48) & 0xffff,
            (n >> 32) & 0xffff,
            (n >> 16) & 0xffff,
            n & 0xffff
        )
    }

    /// `job.0000.000a.1200.0000`: the job's KVS directory.
    pub fn kvs(self) -> String {
        format!("job.{}", self.dothex())
    }

    /// Milliseconds since the instance's epoch at which the id was allocated.
    pub fn timestamp_ms(self) -> u64 {
        self.0 >> 24
    }

    /// Parse any of the accepted forms (surrounding whitespace ignored).
    pub fn parse(input: &str) -> Result<JobId, Error> {
        let s = input.trim();
        let bad = |reason: &str| Error::JobId {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("hex form is 0x followed by hex digits"));
            }
            return u64::from_str_radix(hex, 16)
                .map(JobId)
                .map_err(|_| bad("does not fit in 64 bits"));
        }
        if let Some(dothex) = s.strip_prefix("job.") {
            return parse_dothex(dothex).ok_or_else(|| bad("KVS form is job.XXXX.XXXX.XXXX.XXXX"));
        }
        if s.contains('.') {
            return parse_dothex(s).ok_or_else(|| bad("dothex form is XXXX.XXXX.XXXX.XXXX"));
        }
        if let Some(digits) = s.strip_prefix(F58_PREFIX).or_else(|| s.strip_prefix('f')) {
            return parse_f58(digits).map_err(bad);
        }
        if s.contains('-') {
            return Err(bad(
                "the mnemonic (words) form is not supported; use the F58 or decimal id",
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                "not a job id: expected ƒ…, f…, decimal, 0x… or XXXX.XXXX.XXXX.XXXX",
            ));
        }
        s.parse()
            .map(JobId)
            .map_err(|_| bad("does not fit in 64 bits"))
    }
}

fn parse_dothex(s: &str) -> Option<JobId> {
    let groups: Vec<&str> = s.split('.').collect();
    if groups.len() != 4 {
        return None;
    }
    let mut n = 0u64;
    for g in groups {
        if g.len() != 4 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        n = (n << 16) | u64::from_str_radix(g, 16).ok()?;
    }
    Some(JobId(n))
}

fn parse_f58(digits: &str) -> Result<JobId, &'static str> {
    if digits.is_empty() {
        return Err("F58 form needs digits after the prefix");
    }
    let mut n: u64 = 0;
    for b in digits.bytes() {
        let d = F58_ALPHABET
            .iter()
            .position(|&a| a == b)
            .ok_or("F58 digits are 1-9, A-Z and a-z without 0, I, O and l")?;
        n = n
            .checked_mul(58)
            .and_then(|n| n.checked_add(d as u64))
            .ok_or("does not fit in 64 bits")?;
    }
    Ok(JobId(n))
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.f58())
    }
}

impl FromStr for JobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        JobId::parse(s)
    }
}

impl From<u64> for JobId {
    fn from(n: u64) -> Self {
        JobId(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms_of_a_recorded_job() {
        // 03-submit: `flux submit hostname` printed ƒ28u15Vy for id 43251662848.
        let id = JobId(43251662848);
        assert_eq!(id.f58(), "ƒ28u15Vy");
        assert_eq!(id.f58_ascii(), "f28u15Vy");
        assert_eq!(id.hex(), "0xa12000000");
        assert_eq!(id.dothex(), "0000.000a.1200.0000");
        assert_eq!(id.kvs(), "job.0000.000a.1200.0000");
        for form in [
            "ƒ28u15Vy",
            "f28u15Vy",
            "43251662848",
            "0xa12000000",
            "0000.000a.1200.0000",
            "job.0000.000a.1200.0000",
            " ƒ28u15Vy\n",
        ] {
            assert_eq!(JobId::parse(form).unwrap(), id, "{form}");
        }
        assert_eq!(JobId(0).f58(), "ƒ1");
    }

    #[test]
    fn bad_ids_say_why() {
        for bad in [
            "",
            "ƒ",
            "f0O",
            "12x",
            "0x",
            "0xzz",
            "1.2.3",
            "word-word-word",
            "99999999999999999999",
            "fzzzzzzzzzzzzzzz",
        ] {
            let e = JobId::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid job id"), "{bad}: {e}");
        }
    }

    proptest! {
        #[test]
        fn every_form_round_trips(n in any::<u64>()) {
            let id = JobId(n);
            for s in [id.f58(), id.f58_ascii(), id.hex(), id.dothex(), id.kvs(), n.to_string()] {
                prop_assert_eq!(JobId::parse(&s).unwrap(), id);
            }
        }
    }
}
