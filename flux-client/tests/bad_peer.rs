//! A broker that misbehaves — garbage, truncated or oversized frames, silence, closing in the
//! middle of a stream — yields a typed error, never a panic or a hang.

use std::future::Future;
use std::time::Duration;

use flux_client::codec::{MessageCodec, encode_message};
use flux_client::message::MsgType;
use flux_client::{Client, ClientOptions, Error, Message, Request};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::FramedRead;

/// Run `peer` as the broker side of one connection; return a URI to reach it.
fn serve<F, Fut>(peer: F) -> (tempfile::TempDir, String)
where
    F: FnOnce(UnixStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        if let Ok((s, _)) = listener.accept().await {
            peer(s).await;
        }
    });
    (dir, format!("local://{}", path.display()))
}

fn quick() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_millis(300),
        timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    }
}

/// Accept, then read the first request and hand it to `reply`.
async fn first_request(s: UnixStream) -> (Message, tokio::net::unix::OwnedWriteHalf) {
    let (r, mut w) = s.into_split();
    w.write_all(&[0]).await.unwrap();
    let mut frames = FramedRead::new(r, MessageCodec::default());
    let req = frames.next().await.unwrap().unwrap();
    tokio::spawn(async move { while frames.next().await.is_some() {} });
    (req, w)
}

fn response_to(req: &Message, payload: Option<&[u8]>, errnum: u32) -> Message {
    let mut m = req.clone();
    m.kind = MsgType::Response;
    m.aux1 = errnum;
    m.payload = payload.map(<[u8]>::to_vec);
    m
}

#[tokio::test]
async fn garbage_instead_of_a_message() {
    let (_d, uri) = serve(|s| async move {
        let (_, mut w) = first_request(s).await;
        w.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let flux = Client::connect_with(&uri, quick()).await.unwrap();
    let err = flux.attr_get("size").await.unwrap_err();
    assert!(
        matches!(err, Error::Closed(ref r) if r.contains("bad stream magic")),
        "{err}"
    );
    // The connection is dead: later calls fail at once rather than waiting for a timeout.
    let err = flux.attr_get("size").await.unwrap_err();
    assert!(matches!(err, Error::Closed(_)), "{err}");
}

#[tokio::test]
async fn truncated_message_then_close() {
    let (_d, uri) = serve(|s| async move {
        let (req, mut w) = first_request(s).await;
        let bytes = encode_message(&response_to(&req, Some(b"{\"value\":\"1\"}\0"), 0));
        w.write_all(&bytes[..bytes.len() - 7]).await.unwrap();
    });
    let flux = Client::connect_with(&uri, quick()).await.unwrap();
    let err = flux.attr_get("size").await.unwrap_err();
    assert!(
        matches!(err, Error::Closed(ref r) if r.contains("into a message")),
        "{err}"
    );
}

#[tokio::test]
async fn oversized_message_is_refused_before_reading_it() {
    let (_d, uri) = serve(|s| async move {
        let (_, mut w) = first_request(s).await;
        let mut header = flux_client::codec::STREAM_MAGIC.to_vec();
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        w.write_all(&header).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let flux = Client::connect_with(&uri, quick()).await.unwrap();
    let err = flux.attr_get("size").await.unwrap_err();
    assert!(
        err.to_string().contains("over the 67108864-byte limit"),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_proto_frame() {
    let (_d, uri) = serve(|s| async move {
        let (_, mut w) = first_request(s).await;
        let mut bytes = flux_client::codec::STREAM_MAGIC.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 3, 2, b'h', b'i']);
        w.write_all(&bytes).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let flux = Client::connect_with(&uri, quick()).await.unwrap();
    let err = flux.attr_get("size").await.unwrap_err();
    assert!(err.to_string().contains("PROTO frame"), "{err}");
}

#[tokio::test]
async fn close_in_the_middle_of_a_stream() {
    let (_d, uri) = serve(|s| async move {
        let (req, mut w) = first_request(s).await;
        for _ in 0..2 {
            let r = response_to(
                &req,
                Some(b"{\"event\":\"{\\\"timestamp\\\":1.0,\\\"name\\\":\\\"submit\\\"}\\n\"}\0"),
                0,
            );
            w.write_all(&encode_message(&r)).await.unwrap();
        }
    });
    let flux = Client::connect_with(&uri, quick()).await.unwrap();
    let mut watch = flux
        .job_eventlog_watch(flux_client::JobId(1), "eventlog", Default::default())
        .unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap().name, "submit");
    assert_eq!(watch.next().await.unwrap().unwrap().name, "submit");
    let err = watch.next().await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Closed(_)), "{err}");
    assert!(watch.next().await.is_none());
}

#[tokio::test]
async fn silent_broker_times_out() {
    let (_d, uri) = serve(|s| async move {
        let _keep = first_request(s).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let flux = Client::connect_with(&uri, quick()).await.unwrap();
    let err = flux.attr_get("size").await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(err.to_string(), "attr.get: no response within 300ms");
    // A stream with an idle limit gives up too.
    let mut s = flux
        .rpc_stream(Request::new("x"))
        .unwrap()
        .idle_timeout(Duration::from_millis(100));
    assert!(matches!(s.next().await, Some(Err(Error::Timeout { .. }))));
}

#[tokio::test]
async fn no_accept_byte_times_out_and_eof_is_connection_reset() {
    let (_d, uri) = serve(|s| async move {
        let _keep_open = s;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let err = Client::connect_with(&uri, quick()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");

    let (_d, uri) = serve(|s| async move { drop(s) });
    let err = Client::connect_with(&uri, quick()).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { errno: 104 }), "{err}");
}

#[tokio::test]
async fn unexpected_payload_is_a_typed_error() {
    let (_d, uri) = serve(|s| async move {
        let (req, mut w) = first_request(s).await;
        let r = response_to(&req, Some(b"[1,2\0"), 0);
        w.write_all(&encode_message(&r)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let flux = Client::connect_with(&uri, quick()).await.unwrap();
    let err = flux.attr_get("size").await.unwrap_err();
    assert!(matches!(err, Error::Payload { .. }), "{err}");
}

#[tokio::test]
async fn bad_uris_and_missing_sockets() {
    for (uri, want) in [
        ("ssh://host/run/flux/local", "only local://PATH"),
        ("local://", "empty"),
    ] {
        let err = Client::connect(uri).await.unwrap_err();
        assert!(err.to_string().contains(want), "{uri}: {err}");
    }
    let err = Client::connect("local:///nonexistent/flux/local")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot connect to the broker socket /nonexistent/flux/local"),
        "{err}"
    );
}
