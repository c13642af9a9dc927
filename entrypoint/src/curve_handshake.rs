//! The first steps of a ZeroMQ CURVE connection, enough to learn whether a peer holds a
//! certificate's secret key: the ZMTP 3.0 greeting (rfc.zeromq.org spec 23), then the
//! CurveZMQ HELLO and WELCOME commands (specs 25 and 26).
//!
//! The client boxes HELLO's signature to the server's permanent public key S; only a peer
//! holding the matching secret key can open it and box a WELCOME the client can open. So a
//! WELCOME that opens proves the peer holds the keypair; libzmq closes the connection when it
//! cannot open HELLO. The client stops after WELCOME (no INITIATE), so the server never runs
//! its authentication or sees a session: to a Flux broker this is a connection that went away
//! during the handshake, logged nowhere unless `tbon.zmqdebug` is set.
//!
//! [`serve`] is the server's half up to WELCOME, for peers that are not libzmq (the test
//! stand-in for `flux`). No secret key is ever part of an error.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crypto_box::aead::Aead;
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use minicluster_core::CurveCert;
use zeroize::Zeroizing;

/// How long one handshake may take: a libzmq peer answers at once, from its I/O thread.
pub const LIMIT: Duration = Duration::from_secs(5);

const SIGNATURE_LEN: usize = 10;
const GREETING_LEN: usize = 64;
const MECHANISM: &[u8] = b"CURVE";
const HELLO_DATA_LEN: usize = 194;
const WELCOME_DATA_LEN: usize = 160;
const HELLO_NONCE: &[u8; 16] = b"CurveZMQHELLO---";
const WELCOME_NONCE: &[u8; 8] = b"WELCOME-";
/// A WELCOME is 168 bytes and an ERROR at most 262: a longer command answers nothing of ours.
const MAX_ANSWER: u64 = 512;

/// Why a peer did not prove that it holds the certificate.
#[derive(Debug)]
pub enum Failure {
    /// It speaks CURVE but turned the handshake down.
    Refused(Refusal),
    /// It accepted the connection but did not answer in time.
    TimedOut {
        waiting_for: &'static str,
        after: Duration,
    },
    /// What it sent is not a ZMTP 3 CURVE server's.
    NotZmtp(String),
    /// The connection could not be made or broke.
    Network(std::io::Error),
    /// This machine gave no randomness for the connection's keys.
    Randomness(String),
}

/// How a CURVE server turned a HELLO down.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It closed the connection (libzmq's answer to a HELLO it cannot open).
    Closed,
    /// It sent an ERROR command with this reason.
    Error(String),
    /// Its WELCOME does not open with the certificate's public key.
    WelcomeDoesNotOpen,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(Refusal::Closed) => f.write_str("the CURVE handshake was refused"),
            Failure::Refused(Refusal::Error(reason)) => {
                write!(f, "the CURVE handshake was refused with ERROR {reason:?}")
            }
            Failure::Refused(Refusal::WelcomeDoesNotOpen) => {
                f.write_str("the CURVE handshake was refused: its WELCOME does not open with this certificate's key")
            }
            Failure::TimedOut { waiting_for, after } => write!(
                f,
                "no {waiting_for} within {}s of the connection",
                after.as_secs_f32()
            ),
            Failure::NotZmtp(detail) => write!(f, "not a ZMTP 3 CURVE server: {detail}"),
            Failure::Network(e) => write!(f, "{e}"),
            Failure::Randomness(e) => write!(f, "this machine gave no randomness: {e}"),
        }
    }
}

/// The client's side: greeting, HELLO, and a WELCOME that must open with `cert`'s public key.
/// `Ok` means the peer holds `cert`'s secret key.
pub fn client(stream: &TcpStream, cert: &CurveCert, deadline: Instant) -> Result<(), Failure> {
    let mut conn = Conn::new(stream, deadline);
    conn.send(&greeting(false), Stage::Greeting)?;
    conn.expect_greeting()?;
    let server = permanent(cert).public_key();
    let transient = transient_key()?;
    let short_nonce = 1u64;
    let mut data = Vec::with_capacity(HELLO_DATA_LEN);
    data.extend_from_slice(&[1, 0]);
    data.extend_from_slice(&[0; 72]);
    data.extend_from_slice(transient.public_key().as_bytes());
    data.extend_from_slice(&short_nonce.to_be_bytes());
    // One key agreement serves both boxes: C' to S for HELLO, S to C' for WELCOME.
    let boxes = SalsaBox::new(&server, &transient);
    let signature = boxes
        .encrypt(
            &nonce(HELLO_NONCE, &short_nonce.to_be_bytes()),
            &[0u8; 64][..],
        )
        .expect("a 64-byte box always seals");
    data.extend_from_slice(&signature);
    conn.send(&command("HELLO", &data), Stage::Answer)?;

    let (name, data) = conn.command(Stage::Answer)?;
    match name.as_slice() {
        b"WELCOME" if data.len() == WELCOME_DATA_LEN => {
            let (long_nonce, sealed) = data.split_at(16);
            match boxes.decrypt(&nonce(WELCOME_NONCE, long_nonce), sealed) {
                Ok(plain) if plain.len() == 128 => Ok(()),
                _ => Err(Failure::Refused(Refusal::WelcomeDoesNotOpen)),
            }
        }
        b"WELCOME" => Err(Failure::NotZmtp(format!(
            "its WELCOME has {} bytes of data, not {WELCOME_DATA_LEN}",
            data.len()
        ))),
        b"ERROR" => Err(Failure::Refused(Refusal::Error(error_reason(&data)))),
        other => Err(Failure::NotZmtp(format!(
            "it answered HELLO with {}",
            other.escape_ascii()
        ))),
    }
}

/// What [`serve`] did with a client's HELLO.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// HELLO opened with `cert`'s secret key and WELCOME was sent.
    Welcomed,
    /// HELLO did not open: the caller closes the connection, as libzmq does.
    Refused,
}

/// The server's side as far as WELCOME. The WELCOME's cookie is random bytes: this server
/// never reads an INITIATE, so no session key needs to come back in it.
pub fn serve(stream: &TcpStream, cert: &CurveCert, deadline: Instant) -> Result<Answer, Failure> {
    let mut conn = Conn::new(stream, deadline);
    conn.expect_greeting()?;
    conn.send(&greeting(true), Stage::Hello)?;
    let (name, data) = conn.command(Stage::Hello)?;
    if name != b"HELLO" || data.len() != HELLO_DATA_LEN || data[..2] != [1, 0] {
        return Err(Failure::NotZmtp(format!(
            "expected a CurveZMQ 1.0 HELLO, got {} with {} bytes of data",
            name.escape_ascii(),
            data.len()
        )));
    }
    // HELLO's data: version (2), padding (72), C' (32), short nonce (8), signature box (80).
    let client_key: [u8; 32] = data[74..106].try_into().expect("32 bytes");
    let client_key = PublicKey::from(client_key);
    let secret = permanent(cert);
    let seal = SalsaBox::new(&client_key, &secret);
    match seal.decrypt(&nonce(HELLO_NONCE, &data[106..114]), &data[114..]) {
        Ok(plain) if plain.iter().all(|&b| b == 0) => {}
        _ => return Ok(Answer::Refused),
    }
    let transient = transient_key()?;
    let long_nonce = random::<16>()?;
    let mut plain = Zeroizing::new(Vec::with_capacity(128));
    plain.extend_from_slice(transient.public_key().as_bytes());
    plain.extend_from_slice(&*random::<96>()?);
    let sealed = seal
        .encrypt(&nonce(WELCOME_NONCE, &*long_nonce), plain.as_slice())
        .expect("a 128-byte box always seals");
    let mut data = long_nonce.to_vec();
    data.extend_from_slice(&sealed);
    conn.send(&command("WELCOME", &data), Stage::Hello)?;
    Ok(Answer::Welcomed)
}

fn permanent(cert: &CurveCert) -> SecretKey {
    SecretKey::from(*cert.secret_key_bytes())
}

/// A fresh key pair for one connection, as CurveZMQ wants (the secret dies with it).
fn transient_key() -> Result<SecretKey, Failure> {
    Ok(SecretKey::from(*random::<32>()?))
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, Failure> {
    let mut b = Zeroizing::new([0u8; N]);
    getrandom::fill(b.as_mut()).map_err(|e| Failure::Randomness(e.to_string()))?;
    Ok(b)
}

fn nonce(prefix: &[u8], rest: &[u8]) -> crypto_box::Nonce {
    let mut n = crypto_box::Nonce::default();
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..].copy_from_slice(rest);
    n
}

/// A full ZMTP 3.0 greeting for the CURVE mechanism.
fn greeting(as_server: bool) -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[12..12 + MECHANISM.len()].copy_from_slice(MECHANISM);
    g[32] = u8::from(as_server);
    g
}

/// A command frame: short (flags 0x04) up to 255 bytes of body, else long (0x06).
fn command(name: &str, data: &[u8]) -> Vec<u8> {
    let len = 1 + name.len() + data.len();
    let mut out = Vec::with_capacity(len + 9);
    match u8::try_from(len) {
        Ok(short) => out.extend_from_slice(&[0x04, short]),
        Err(_) => {
            out.push(0x06);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    out
}

fn error_reason(data: &[u8]) -> String {
    let reason = data
        .split_first()
        .map(|(&n, rest)| &rest[..rest.len().min(n.into())])
        .unwrap_or_default();
    String::from_utf8_lossy(reason).into_owned()
}

/// What is being read, which decides what an early close means.
#[derive(Clone, Copy)]
enum Stage {
    Greeting,
    Hello,
    Answer,
}

impl Stage {
    fn waiting_for(self) -> &'static str {
        match self {
            Stage::Greeting => "ZMTP greeting",
            Stage::Hello => "HELLO",
            Stage::Answer => "answer to HELLO",
        }
    }
}

/// A connection whose every read and write ends by one deadline.
struct Conn<'a> {
    stream: &'a TcpStream,
    started: Instant,
    deadline: Instant,
}

impl<'a> Conn<'a> {
    fn new(stream: &'a TcpStream, deadline: Instant) -> Self {
        Conn {
            stream,
            started: Instant::now(),
            deadline,
        }
    }

    fn remaining(&self, stage: Stage) -> Result<Duration, Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out(stage));
        }
        Ok(left)
    }

    fn timed_out(&self, stage: Stage) -> Failure {
        Failure::TimedOut {
            waiting_for: stage.waiting_for(),
            after: self.deadline.saturating_duration_since(self.started),
        }
    }

    fn send(&mut self, bytes: &[u8], stage: Stage) -> Result<(), Failure> {
        let left = self.remaining(stage)?;
        let mut s = self.stream;
        s.set_write_timeout(Some(left))
            .and_then(|()| s.write_all(bytes))
            .map_err(|e| match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => self.timed_out(stage),
                _ => Failure::Network(e),
            })
    }

    /// Fills `buf`; how many bytes came before the peer closed is in the error.
    fn fill(&mut self, buf: &mut [u8], stage: Stage) -> Result<(), (usize, Failure)> {
        let mut got = 0;
        while got < buf.len() {
            let left = self.remaining(stage).map_err(|e| (got, e))?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| (got, Failure::Network(e)))?;
            let mut s = self.stream;
            match s.read(&mut buf[got..]) {
                Ok(0) => return Err((got, self.closed(stage, got))),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err((got, self.timed_out(stage)));
                }
                Err(e)
                    if matches!(stage, Stage::Answer) && e.kind() == ErrorKind::ConnectionReset =>
                {
                    return Err((got, Failure::Refused(Refusal::Closed)));
                }
                Err(e) => return Err((got, Failure::Network(e))),
            }
        }
        Ok(())
    }

    fn closed(&self, stage: Stage, got: usize) -> Failure {
        match stage {
            Stage::Answer => Failure::Refused(Refusal::Closed),
            _ if got == 0 => Failure::NotZmtp(format!(
                "it closed the connection without a {}",
                stage.waiting_for()
            )),
            _ => Failure::NotZmtp(format!(
                "it closed the connection in the middle of its {}",
                stage.waiting_for()
            )),
        }
    }

    /// Reads the peer's greeting: the signature first, so a peer that is not ZMTP is named
    /// by what it sent rather than by the wait for a whole greeting.
    fn expect_greeting(&mut self) -> Result<(), Failure> {
        let mut g = [0u8; GREETING_LEN];
        if let Err((got, e)) = self.fill(&mut g[..SIGNATURE_LEN], Stage::Greeting) {
            return Err(match e {
                Failure::NotZmtp(_) if got > 0 => not_a_signature(&g[..got]),
                e => e,
            });
        }
        if g[0] != 0xff || g[9] & 1 == 0 {
            return Err(not_a_signature(&g[..SIGNATURE_LEN]));
        }
        self.fill(&mut g[SIGNATURE_LEN..], Stage::Greeting)
            .map_err(|(_, e)| e)?;
        if g[10] < 3 {
            return Err(Failure::NotZmtp(format!(
                "it speaks ZMTP {}.{}; CURVE needs 3.0 or later",
                g[10], g[11]
            )));
        }
        let mechanism = g[12..32].split(|&b| b == 0).next().unwrap_or_default();
        if mechanism != MECHANISM {
            return Err(Failure::NotZmtp(format!(
                "its greeting offers the {} mechanism, not CURVE",
                mechanism.escape_ascii()
            )));
        }
        // The as-server byte is not read: libzmq 4.3 sends 0 from CURVE servers too.
        Ok(())
    }

    /// One command frame: its name and its data.
    fn command(&mut self, stage: Stage) -> Result<(Vec<u8>, Vec<u8>), Failure> {
        let mut flags = [0u8; 1];
        self.fill(&mut flags, stage).map_err(|(_, e)| e)?;
        if flags[0] & !0x06 != 0 || flags[0] & 0x04 == 0 {
            return Err(Failure::NotZmtp(format!(
                "it sent a frame with flags {:#04x} where a command belongs",
                flags[0]
            )));
        }
        let size = if flags[0] & 0x02 != 0 {
            let mut b = [0u8; 8];
            self.fill(&mut b, stage).map_err(|(_, e)| e)?;
            u64::from_be_bytes(b)
        } else {
            let mut b = [0u8; 1];
            self.fill(&mut b, stage).map_err(|(_, e)| e)?;
            u64::from(b[0])
        };
        if size == 0 || size > MAX_ANSWER {
            return Err(Failure::NotZmtp(format!(
                "it sent a command of {size} bytes during the handshake"
            )));
        }
        let mut body = vec![0u8; size as usize];
        self.fill(&mut body, stage).map_err(|(_, e)| e)?;
        let name_len = usize::from(body[0]);
        if body.len() < 1 + name_len {
            return Err(Failure::NotZmtp(
                "it sent a command whose name is longer than the command".into(),
            ));
        }
        let data = body.split_off(1 + name_len);
        body.remove(0);
        Ok((body, data))
    }
}

fn not_a_signature(got: &[u8]) -> Failure {
    Failure::NotZmtp(format!(
        "it sent \"{}\" where a ZMTP signature belongs",
        got.escape_ascii()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (c, l.accept().unwrap().0)
    }

    fn soon() -> Instant {
        Instant::now() + LIMIT
    }

    /// Runs the client against `server` on the other end of a loopback connection.
    fn against(
        cert: &CurveCert,
        server: impl FnOnce(TcpStream) + Send + 'static,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let (c, s) = pair();
        let t = std::thread::spawn(move || server(s));
        let r = client(&c, cert, deadline);
        drop(c);
        t.join().unwrap();
        r
    }

    #[test]
    fn the_same_keypair_is_welcomed_and_another_refused() {
        let ours = CurveCert::generate("mc-0").unwrap();
        let theirs = ours.clone();
        let served = std::sync::Arc::new(std::sync::Mutex::new(None));
        let s2 = served.clone();
        let r = against(
            &ours,
            move |s| *s2.lock().unwrap() = Some(serve(&s, &theirs, soon()).unwrap()),
            soon(),
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(served.lock().unwrap().take(), Some(Answer::Welcomed));

        let stranger = CurveCert::generate("stranger").unwrap();
        let s2 = served.clone();
        let r = against(
            &ours,
            move |s| *s2.lock().unwrap() = Some(serve(&s, &stranger, soon()).unwrap()),
            soon(),
        );
        assert!(matches!(r, Err(Failure::Refused(Refusal::Closed))), "{r:?}");
        assert_eq!(served.lock().unwrap().take(), Some(Answer::Refused));
    }

    #[test]
    fn frames_follow_the_spec_sizes() {
        assert_eq!(greeting(true).len(), 64);
        let hello = command("HELLO", &[0; HELLO_DATA_LEN]);
        assert_eq!(&hello[..3], &[0x04, 200, 5]);
        let long = command("X", &[0; 300]);
        assert_eq!(long[0], 0x06);
        assert_eq!(u64::from_be_bytes(long[1..9].try_into().unwrap()), 302);
    }

    /// A server that greets as libzmq does, then sends `answer` after reading HELLO.
    fn scripted(answer: Vec<u8>) -> impl FnOnce(TcpStream) + Send + 'static {
        move |mut s| {
            let mut buf = [0u8; 64 + 202];
            s.write_all(&greeting(true)).unwrap();
            s.read_exact(&mut buf).unwrap();
            s.write_all(&answer).unwrap();
        }
    }

    #[test]
    fn an_error_command_is_a_refusal_with_its_reason() {
        let cert = CurveCert::generate("mc-0").unwrap();
        let r = against(&cert, scripted(command("ERROR", b"\x03400")), soon());
        match r {
            Err(Failure::Refused(Refusal::Error(reason))) => assert_eq!(reason, "400"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_welcome_sealed_by_another_key_does_not_pass() {
        let cert = CurveCert::generate("mc-0").unwrap();
        let r = against(
            &cert,
            scripted(command("WELCOME", &[7u8; WELCOME_DATA_LEN])),
            soon(),
        );
        assert!(
            matches!(r, Err(Failure::Refused(Refusal::WelcomeDoesNotOpen))),
            "{r:?}"
        );
    }

    #[test]
    fn peers_that_are_not_curve_servers_are_named() {
        let cert = CurveCert::generate("mc-0").unwrap();
        let http = |mut s: TcpStream| {
            let mut request = [0u8; 64];
            s.read_exact(&mut request).unwrap();
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        };
        let e = against(&cert, http, soon()).unwrap_err().to_string();
        assert!(
            e.contains("not a ZMTP 3 CURVE server") && e.contains("HTTP/1.1"),
            "{e}"
        );

        let mut null = greeting(true);
        null[12..32].copy_from_slice(&[0; 20]);
        null[12..16].copy_from_slice(b"NULL");
        let null_server = move |mut s: TcpStream| {
            let mut theirs = [0u8; 64];
            s.read_exact(&mut theirs).unwrap();
            s.write_all(&null).unwrap();
        };
        let e = against(&cert, null_server, soon()).unwrap_err().to_string();
        assert!(e.contains("offers the NULL mechanism"), "{e}");

        let hang_up = |mut s: TcpStream| {
            let mut theirs = [0u8; 64];
            s.read_exact(&mut theirs).unwrap();
        };
        let e = against(&cert, hang_up, soon()).unwrap_err().to_string();
        assert!(
            e.contains("closed the connection without a ZMTP greeting"),
            "{e}"
        );
    }

    #[test]
    fn a_silent_peer_times_out_by_the_deadline() {
        let cert = CurveCert::generate("mc-0").unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let silent = move |s: TcpStream| {
            let _ = rx.recv();
            drop(s);
        };
        let deadline = Instant::now() + Duration::from_millis(300);
        let (c, s) = pair();
        let t = std::thread::spawn(move || silent(s));
        let r = client(&c, &cert, deadline);
        tx.send(()).unwrap();
        t.join().unwrap();
        match r {
            Err(Failure::TimedOut { waiting_for, .. }) => {
                assert_eq!(waiting_for, "ZMTP greeting")
            }
            other => panic!("{other:?}"),
        }
    }
}
