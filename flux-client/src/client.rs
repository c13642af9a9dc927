//! A connection to a broker's local connector: handshake, request/response routing by
//! matchtag, streaming RPCs and event delivery.
//!
//! One reader task routes incoming messages; one writer task owns the socket's write half, so a
//! caller that gives up (timeout, dropped future) never leaves half a message on the wire.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tracing::{debug, trace, warn};

use crate::codec::{DEFAULT_MAX_MESSAGE, MessageCodec, encode_message};
use crate::error::{Error, Result, errno};
use crate::message::{MATCHTAG_NONE, Message, MsgType, NODEID_ANY, flags};

/// Connection settings. Every call is bounded by `timeout` unless it says otherwise.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed to connect and receive the connector's accept byte.
    pub connect_timeout: Duration,
    /// Time allowed for the response of a normal RPC.
    pub timeout: Duration,
    /// Largest message accepted from the broker.
    pub max_message: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// A request to send: topic, target rank and an optional payload.
#[derive(Debug, Clone)]
pub struct Request {
    pub topic: String,
    pub nodeid: u32,
    pub payload: Option<Vec<u8>>,
}

impl Request {
    /// A request any rank may answer, without payload.
    pub fn new(topic: impl Into<String>) -> Self {
        Request {
            topic: topic.into(),
            nodeid: NODEID_ANY,
            payload: None,
        }
    }

    /// A JSON payload, serialized compactly.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        let mut bytes = serde_json::to_vec(value).map_err(|e| Error::Encode(e.to_string()))?;
        bytes.push(0);
        self.payload = Some(bytes);
        Ok(self)
    }

    /// Address one broker rank.
    pub fn rank(mut self, rank: u32) -> Self {
        self.nodeid = rank;
        self
    }
}

/// A success response.
#[derive(Debug, Clone)]
pub struct Response {
    pub message: Message,
}

impl Response {
    /// Decode the JSON payload; a response without one decodes from `{}`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let bytes = self.message.payload_bytes().unwrap_or(b"{}");
        serde_json::from_slice(bytes).map_err(|e| Error::Payload {
            topic: self.message.topic().to_owned(),
            reason: e.to_string(),
        })
    }
}

type Reply = Result<Message>;

struct Pending {
    tx: mpsc::UnboundedSender<Reply>,
    streaming: bool,
}

/// Shared between callers and the reader task.
#[derive(Default)]
struct Router {
    pending: HashMap<u32, Pending>,
    free: BTreeSet<u32>,
    next: u32,
    subscriptions: Vec<(u64, String, mpsc::UnboundedSender<Message>)>,
    next_sub: u64,
    closed: Option<String>,
}

impl Router {
    /// The lowest free matchtag, as libflux hands them out (1, 2, … and freed tags reused).
    fn alloc_tag(&mut self) -> u32 {
        if let Some(tag) = self.free.pop_first() {
            return tag;
        }
        self.next += 1;
        self.next
    }

    fn release(&mut self, tag: u32) {
        self.pending.remove(&tag);
        self.free.insert(tag);
    }

    fn route(&mut self, msg: Message) {
        match msg.kind {
            MsgType::Response => {
                let tag = msg.matchtag();
                let Some(p) = self.pending.get(&tag) else {
                    debug!(
                        tag,
                        topic = msg.topic(),
                        "response for no pending request; dropped"
                    );
                    return;
                };
                let last = !p.streaming || msg.errnum() != 0;
                let _ = p.tx.send(Ok(msg));
                if last {
                    self.release(tag);
                }
            }
            MsgType::Event => {
                let topic = msg.topic().to_owned();
                self.subscriptions.retain(|(_, prefix, tx)| {
                    !topic.starts_with(prefix.as_str()) || tx.send(msg.clone()).is_ok()
                });
            }
            other => trace!(?other, topic = msg.topic(), "ignoring message"),
        }
    }

    fn close(&mut self, reason: &str) {
        if self.closed.is_none() {
            self.closed = Some(reason.to_owned());
        }
        for (_, p) in self.pending.drain() {
            let _ = p.tx.send(Err(Error::Closed(reason.to_owned())));
        }
        self.subscriptions.clear();
    }
}

struct Inner {
    router: Arc<Mutex<Router>>,
    writer: mpsc::UnboundedSender<Vec<u8>>,
    options: ClientOptions,
    reader: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer task ends by itself once its channel closes, after flushing what was
        // queued; the reader would wait on the socket forever.
        self.reader.abort();
    }
}

/// A connection to one Flux broker. Cheap to clone; the connection closes with the last clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// The socket path of a `local://PATH` URI.
pub fn local_path(uri: &str) -> Result<&str> {
    let bad = |reason: &str| Error::Uri {
        uri: uri.to_owned(),
        reason: reason.to_owned(),
    };
    let path = uri
        .strip_prefix("local://")
        .ok_or_else(|| bad("only local://PATH is supported (the broker's Unix socket)"))?;
    if path.is_empty() {
        return Err(bad("the path after local:// is empty"));
    }
    Ok(path)
}

impl Client {
    /// Connect to the broker named by `$FLUX_URI`.
    pub async fn connect_env() -> Result<Client> {
        let uri = std::env::var("FLUX_URI").map_err(|_| Error::NoUri)?;
        Client::connect(&uri).await
    }

    /// Connect to `local://PATH` with default options.
    pub async fn connect(uri: &str) -> Result<Client> {
        Client::connect_with(uri, ClientOptions::default()).await
    }

    pub async fn connect_with(uri: &str, options: ClientOptions) -> Result<Client> {
        let path = local_path(uri)?;
        let handshake = async {
            let mut stream = UnixStream::connect(path)
                .await
                .map_err(|source| Error::Connect {
                    path: path.to_owned(),
                    source,
                })?;
            // The connector speaks first: one byte, 0 for accepted, else an errno.
            let mut byte = [0u8; 1];
            match stream.read(&mut byte).await? {
                0 => Err(Error::Rejected {
                    errno: errno::ECONNRESET,
                }),
                _ if byte[0] != 0 => Err(Error::Rejected {
                    errno: byte[0] as u32,
                }),
                _ => Ok(stream),
            }
        };
        let stream = tokio::time::timeout(options.connect_timeout, handshake)
            .await
            .map_err(|_| Error::Timeout {
                topic: format!("connect {path}"),
                after: options.connect_timeout,
            })??;
        debug!(path, "connected to broker");
        Ok(Client::from_stream(stream, options))
    }

    /// Run the protocol over an already accepted stream (after the handshake byte).
    pub fn from_stream(stream: UnixStream, options: ClientOptions) -> Client {
        let (read, mut write) = stream.into_split();
        let router = Arc::new(Mutex::new(Router::default()));
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();

        let writer_router = router.clone();
        tokio::spawn(async move {
            while let Some(bytes) = wrx.recv().await {
                if let Err(e) = write.write_all(&bytes).await {
                    warn!(error = %e, "write to broker failed");
                    lock(&writer_router).close(&format!("write failed: {e}"));
                    return;
                }
            }
            let _ = write.shutdown().await;
        });

        let reader_router = router.clone();
        let codec = MessageCodec::new(options.max_message);
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::new(read, codec);
            let reason = loop {
                match frames.next().await {
                    Some(Ok(msg)) => lock(&reader_router).route(msg),
                    Some(Err(e)) => break e.to_string(),
                    None => break "the broker closed the connection".to_owned(),
                }
            };
            debug!(%reason, "connection ended");
            lock(&reader_router).close(&reason);
        });

        Client {
            inner: Arc::new(Inner {
                router,
                writer: wtx,
                options,
                reader,
            }),
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    fn send_bytes(&self, bytes: Vec<u8>) -> Result<()> {
        self.inner
            .writer
            .send(bytes)
            .map_err(|_| Error::Closed("the connection's writer has stopped".into()))
    }

    /// Register a request under a fresh matchtag and send it.
    fn start(
        &self,
        req: Request,
        streaming: bool,
    ) -> Result<(u32, mpsc::UnboundedReceiver<Reply>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let tag = {
            let mut r = lock(&self.inner.router);
            if let Some(reason) = &r.closed {
                return Err(Error::Closed(reason.clone()));
            }
            let tag = r.alloc_tag();
            r.pending.insert(tag, Pending { tx, streaming });
            tag
        };
        let mut msg = Message::request(&req.topic, req.nodeid, tag);
        msg.payload = req.payload;
        if streaming {
            msg.flags |= flags::STREAMING;
        }
        trace!(topic = %req.topic, tag, streaming, "request");
        if let Err(e) = self.send_bytes(encode_message(&msg)) {
            lock(&self.inner.router).release(tag);
            return Err(e);
        }
        Ok((tag, rx))
    }

    /// A normal RPC: one response within the client's timeout.
    pub async fn rpc(&self, req: Request) -> Result<Response> {
        let timeout = self.inner.options.timeout;
        self.rpc_within(req, timeout).await
    }

    /// A normal RPC with its own time limit (e.g. waiting for a job to finish).
    pub async fn rpc_within(&self, req: Request, timeout: Duration) -> Result<Response> {
        let topic = req.topic.clone();
        let (_, mut rx) = self.start(req, false)?;
        let reply = tokio::time::timeout(timeout, rx.recv())
            .await
            .map_err(|_| Error::Timeout {
                topic: topic.clone(),
                after: timeout,
            })?;
        let msg = reply.ok_or_else(|| Error::Closed("request abandoned".into()))??;
        check(msg)
    }

    /// A streaming RPC: responses until an error response; ENODATA ends it cleanly.
    pub fn rpc_stream(&self, req: Request) -> Result<ResponseStream> {
        let topic = req.topic.clone();
        let (tag, rx) = self.start(req, true)?;
        Ok(ResponseStream {
            rx,
            topic,
            matchtag: tag,
            done: false,
            idle_timeout: None,
        })
    }

    /// A request that gets no response (NORESPONSE flag, no matchtag).
    pub fn send_noresponse(&self, req: Request) -> Result<()> {
        let mut msg = Message::request(&req.topic, req.nodeid, MATCHTAG_NONE);
        msg.payload = req.payload;
        msg.flags |= flags::NORESPONSE;
        self.send_bytes(encode_message(&msg))
    }

    /// Publish an event message directly (the broker assigns its sequence number).
    pub fn send_event(&self, topic: &str, payload: Option<&serde_json::Value>) -> Result<()> {
        let mut msg = Message::event(topic);
        if let Some(p) = payload {
            msg = msg.with_json(p)?;
        }
        self.send_bytes(encode_message(&msg))
    }

    /// Subscribe to events whose topic starts with `prefix`.
    pub async fn subscribe(&self, prefix: &str) -> Result<EventStream> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = {
            let mut r = lock(&self.inner.router);
            r.next_sub += 1;
            let id = r.next_sub;
            r.subscriptions.push((id, prefix.to_owned(), tx));
            id
        };
        let req = Request::new("event.subscribe").json(&serde_json::json!({ "topic": prefix }))?;
        if let Err(e) = self.rpc(req).await {
            lock(&self.inner.router).subscriptions.retain(|s| s.0 != id);
            return Err(e);
        }
        Ok(EventStream {
            rx,
            client: self.clone(),
            prefix: prefix.to_owned(),
            id,
        })
    }
}

fn lock(m: &Mutex<Router>) -> std::sync::MutexGuard<'_, Router> {
    // A panic while holding the lock cannot leave the router half-updated in a way that
    // matters more than losing the connection, so a poisoned lock is still used.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Turn an error response into `Error::Remote`.
fn check(msg: Message) -> Result<Response> {
    if msg.errnum() == 0 {
        return Ok(Response { message: msg });
    }
    Err(Error::Remote {
        topic: msg.topic().to_owned(),
        errnum: msg.errnum(),
        message: msg.payload_str().map(str::to_owned),
    })
}

/// The responses of a streaming RPC.
pub struct ResponseStream {
    rx: mpsc::UnboundedReceiver<Reply>,
    topic: String,
    matchtag: u32,
    done: bool,
    idle_timeout: Option<Duration>,
}

impl ResponseStream {
    /// Fail the stream when no response arrives for this long (default: wait indefinitely,
    /// as a watch on a running job may be quiet for hours).
    pub fn idle_timeout(mut self, after: Duration) -> Self {
        self.idle_timeout = Some(after);
        self
    }

    /// The matchtag of the request (what a `*-cancel` request names).
    pub fn matchtag(&self) -> u32 {
        self.matchtag
    }

    /// The next response; `None` after the stream ended with ENODATA.
    pub async fn next(&mut self) -> Option<Result<Response>> {
        if self.done {
            return None;
        }
        let reply = match self.idle_timeout {
            None => self.rx.recv().await,
            Some(after) => match tokio::time::timeout(after, self.rx.recv()).await {
                Ok(r) => r,
                Err(_) => {
                    self.done = true;
                    return Some(Err(Error::Timeout {
                        topic: self.topic.clone(),
                        after,
                    }));
                }
            },
        };
        let item = match reply {
            None => Err(Error::Closed("stream abandoned".into())),
            Some(Err(e)) => Err(e),
            Some(Ok(msg)) if msg.errnum() == errno::ENODATA => {
                self.done = true;
                return None;
            }
            Some(Ok(msg)) => check(msg),
        };
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }

    /// Collect every response until the end of the stream.
    pub async fn collect(mut self) -> Result<Vec<Response>> {
        let mut all = Vec::new();
        while let Some(r) = self.next().await {
            all.push(r?);
        }
        Ok(all)
    }
}

/// Events delivered for one subscription.
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Message>,
    client: Client,
    prefix: String,
    id: u64,
}

impl EventStream {
    /// The next event, `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// The next event within `after`.
    pub async fn next_within(&mut self, after: Duration) -> Result<Message> {
        match tokio::time::timeout(after, self.rx.recv()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Error::Closed("no more events".into())),
            Err(_) => Err(Error::Timeout {
                topic: format!("event {}", self.prefix),
                after,
            }),
        }
    }

    /// Stop the subscription at the broker.
    pub async fn unsubscribe(self) -> Result<()> {
        lock(&self.client.inner.router)
            .subscriptions
            .retain(|s| s.0 != self.id);
        let req =
            Request::new("event.unsubscribe").json(&serde_json::json!({ "topic": self.prefix }))?;
        self.client.rpc(req).await.map(|_| ())
    }
}
