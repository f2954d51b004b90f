//! An async WAMP v2 client: publish, subscribe, call, register.
//!
//! ```text
//!  caller tasks ──encode──► bounded channel ──► writer task ──► socket
//!  socket ──► reader task ──decode──► match request ID ──► oneshot / event channel / handler
//! ```
//!
//! Calling order: [`WampClient::connect`], then [`WampClient::join`] (optionally with
//! [`Auth`]), then any number of concurrent [`publish`](WampClient::publish),
//! [`subscribe`](WampClient::subscribe), [`call`](WampClient::call) and
//! [`register`](WampClient::register) from clones of the client, and [`leave`](WampClient::leave).
//! A background task owns the socket; requests are matched by request ID, so many calls
//! can be in flight at once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fox_demos::wamp::Error> {
//! use fox_demos::wamp::{Transport, WampClient};
//! use fox_wamp_proto::{Dict, Serializer, Value};
//! let mut client = WampClient::connect("127.0.0.1:8080", "realm1", Transport::WebSocket(Serializer::Json)).await?;
//! client.join(None).await?;
//! let (args, _kwargs) = client.call("com.example.add", vec![Value::Int(2), Value::Int(3)], Dict::new(), Dict::new()).await?;
//! client.leave().await?;
//! # Ok(()) }
//! ```

mod dispatch;
mod transport;

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use fox_wamp_proto::{DecodeError, Dict, Id, Message, Serializer, Value};

use dispatch::{Pending, Shared};
use transport::Conn;

/// Largest message accepted from the router, in bytes.
pub const MESSAGE_SIZE_MAX_BYTES: usize = 16 << 20;
/// Serialized messages queued toward the writer task before senders wait.
pub const OUTGOING_QUEUE_MAX: usize = 4096;
/// Events queued per subscription before the reader task waits (backpressure to the router).
pub const EVENT_QUEUE_MAX: usize = 4096;

/// Transport and serializer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket (`ws://host:port/ws`, or `host:port` meaning path `/ws`).
    WebSocket(Serializer),
    /// RawSocket over TCP (`host:port`).
    RawSocket(Serializer),
}

/// Credentials for [`WampClient::join`].
#[derive(Debug, Clone)]
pub enum Auth {
    /// `ticket`: the secret is sent as the signature.
    Ticket {
        /// authid.
        authid: String,
        /// The ticket.
        ticket: String,
    },
    /// `wampcra`: HMAC-SHA256 of the challenge, key derived with PBKDF2 when salted.
    WampCra {
        /// authid.
        authid: String,
        /// The shared secret.
        secret: String,
    },
}

/// An application error returned by the router or a callee (`ERROR` message).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{uri}")]
pub struct WampError {
    /// Error URI, e.g. `wamp.error.no_such_procedure`.
    pub uri: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Dict,
}

impl WampError {
    /// An error with only a URI.
    pub fn new(uri: impl Into<String>) -> Self {
        WampError {
            uri: uri.into(),
            args: Vec::new(),
            kwargs: Dict::new(),
        }
    }
}

/// Everything that can go wrong on a WAMP connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// WebSocket error.
    #[error("websocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The transport handshake failed (subprotocol, RawSocket reply).
    #[error("handshake: {0}")]
    Handshake(String),
    /// The router sent bytes that do not decode.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// The router sent a message out of place.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The router refused the session (ABORT).
    #[error("aborted: {0}")]
    Abort(String),
    /// The router or callee answered with ERROR.
    #[error("error: {0}")]
    Wamp(#[from] WampError),
    /// The session is not (or no longer) established.
    #[error("connection closed")]
    Closed,
    /// [`WampClient::join`] was called twice, or a request before it.
    #[error("not joined or already joined")]
    State,
}

/// Positional and keyword results of a call.
pub type CallResult = (Vec<Value>, Dict);

/// An invocation handed to a registered procedure's handler.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// INVOCATION.Details.
    pub details: Dict,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Dict,
}

/// A received event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Publication ID.
    pub publication: Id,
    /// EVENT.Details.
    pub details: Dict,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Dict,
}

/// A procedure handler as stored by the client.
pub(crate) type Handler =
    Arc<dyn Fn(Invocation) -> BoxFuture<'static, Result<CallResult, WampError>> + Send + Sync>;

/// A WAMP client session. Cheap to clone: clones taken after [`join`](Self::join) share
/// the session (clones taken before it share nothing). The connection stays open until
/// [`leave`](Self::leave) or the router closes it; dropping the handles does not close it.
#[derive(Clone)]
pub struct WampClient {
    realm: String,
    serializer: Serializer,
    conn: Arc<Mutex<Option<Conn>>>,
    shared: Option<Arc<Shared>>,
    session: Id,
}

impl WampClient {
    /// Opens the transport to `url_or_addr`; the session starts with [`join`](Self::join).
    pub async fn connect(
        url_or_addr: &str,
        realm: &str,
        transport: Transport,
    ) -> Result<Self, Error> {
        Self::connect_from(url_or_addr, realm, transport, None).await
    }

    /// As [`connect`](Self::connect), from the local address `local_ip` when given (one of
    /// 127.0.0.x to spread many connections over source addresses).
    pub async fn connect_from(
        url_or_addr: &str,
        realm: &str,
        transport: Transport,
        local_ip: Option<std::net::IpAddr>,
    ) -> Result<Self, Error> {
        let serializer = match transport {
            Transport::WebSocket(s) | Transport::RawSocket(s) => s,
        };
        let conn = Conn::open(url_or_addr, transport, local_ip).await?;
        Ok(WampClient {
            realm: realm.to_owned(),
            serializer,
            conn: Arc::new(Mutex::new(Some(conn))),
            shared: None,
            session: 0,
        })
    }

    /// Sends HELLO (with `auth` if given), answers a challenge, waits for WELCOME and
    /// starts the background tasks. Returns the session ID.
    pub async fn join(&mut self, auth: Option<Auth>) -> Result<Id, Error> {
        let taken = self.conn.lock().map_err(|_| Error::State)?.take();
        let mut conn = taken.ok_or(Error::State)?;
        let hello = Message::Hello {
            realm: self.realm.clone(),
            details: hello_details(auth.as_ref()),
        };
        conn.send(self.serializer, self.serializer.encode(&hello))
            .await?;
        let session = loop {
            let bytes = conn.recv().await?;
            match self.serializer.decode(&bytes, MESSAGE_SIZE_MAX_BYTES)? {
                Message::Welcome { session, .. } => break session,
                Message::Abort { reason, .. } => return Err(Error::Abort(reason)),
                Message::Challenge { authmethod, extra } => {
                    let signature = sign(auth.as_ref(), &authmethod, &extra)?;
                    let reply = Message::Authenticate {
                        signature,
                        extra: Dict::new(),
                    };
                    conn.send(self.serializer, self.serializer.encode(&reply))
                        .await?;
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "expected WELCOME, got {}",
                        other.code()
                    )))
                }
            }
        };
        let (out_tx, out_rx) = mpsc::channel(OUTGOING_QUEUE_MAX);
        let reader = conn.split(self.serializer, out_rx);
        let shared = Arc::new(Shared::new(self.serializer, out_tx));
        tokio::spawn(dispatch::read_loop(reader, shared.clone()));
        self.shared = Some(shared);
        self.session = session;
        Ok(session)
    }

    /// The session ID given by WELCOME (0 before [`join`](Self::join)).
    pub fn session(&self) -> Id {
        self.session
    }

    /// Resolves when the connection has ended (at once if it has, or if the session was
    /// never joined): a client holding something by its session (a lock with a will) has
    /// lost it then.
    pub async fn closed(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut closed = shared.closed.subscribe();
        // An error means the sender is gone: the connection is gone too.
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Publishes an event. With `options.acknowledge = true` waits for PUBLISHED and
    /// returns the publication ID; otherwise returns `None` once the message is queued.
    pub async fn publish(
        &self,
        topic: &str,
        args: Vec<Value>,
        kwargs: Dict,
        options: Dict,
    ) -> Result<Option<Id>, Error> {
        let shared = self.shared()?;
        let acknowledge = options.get("acknowledge").and_then(Value::as_bool) == Some(true);
        let request = shared.next_request();
        let message = Message::Publish {
            request,
            options,
            topic: topic.to_owned(),
            args: Some(args),
            kwargs: (!kwargs.is_empty()).then_some(kwargs),
        };
        if !acknowledge {
            shared.send(&message).await?;
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        shared
            .request(request, Pending::Publish(tx), &message)
            .await?;
        Ok(Some(rx.await.map_err(|_| Error::Closed)??))
    }

    /// Subscribes to `topic`; returns the subscription ID and the stream of its events.
    pub async fn subscribe(
        &self,
        topic: &str,
        options: Dict,
    ) -> Result<(Id, mpsc::Receiver<Event>), Error> {
        let shared = self.shared()?;
        let request = shared.next_request();
        let message = Message::Subscribe {
            request,
            options,
            topic: topic.to_owned(),
        };
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE_MAX);
        let (tx, rx) = oneshot::channel();
        shared
            .request(request, Pending::Subscribe(events_tx, tx), &message)
            .await?;
        let id = rx.await.map_err(|_| Error::Closed)??;
        Ok((id, events_rx))
    }

    /// Calls `procedure` and waits for its RESULT (or ERROR as [`Error::Wamp`]).
    pub async fn call(
        &self,
        procedure: &str,
        args: Vec<Value>,
        kwargs: Dict,
        options: Dict,
    ) -> Result<CallResult, Error> {
        let shared = self.shared()?;
        let request = shared.next_request();
        let message = Message::Call {
            request,
            options,
            procedure: procedure.to_owned(),
            args: Some(args),
            kwargs: (!kwargs.is_empty()).then_some(kwargs),
        };
        let (tx, rx) = oneshot::channel();
        shared.request(request, Pending::Call(tx), &message).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Registers `procedure`; `handler` runs for every invocation (inline when its future
    /// is ready at once, else on its own task). Returns the registration ID.
    pub async fn register<F, Fut>(
        &self,
        procedure: &str,
        options: Dict,
        handler: F,
    ) -> Result<Id, Error>
    where
        F: Fn(Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CallResult, WampError>> + Send + 'static,
    {
        let shared = self.shared()?;
        let request = shared.next_request();
        let message = Message::Register {
            request,
            options,
            procedure: procedure.to_owned(),
        };
        let handler: Handler = Arc::new(move |invocation| handler(invocation).boxed());
        let (tx, rx) = oneshot::channel();
        shared
            .request(request, Pending::Register(handler, tx), &message)
            .await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Sends GOODBYE and waits for the router's GOODBYE (or the connection's end).
    pub async fn leave(&self) -> Result<(), Error> {
        let shared = self.shared()?;
        let (tx, rx) = oneshot::channel();
        *shared.goodbye.lock().map_err(|_| Error::Closed)? = Some(tx);
        let goodbye = Message::Goodbye {
            details: Dict::new(),
            reason: "wamp.close.normal".to_owned(),
        };
        shared.send(&goodbye).await?;
        let _ = rx.await;
        Ok(())
    }

    fn shared(&self) -> Result<&Arc<Shared>, Error> {
        self.shared.as_ref().ok_or(Error::State)
    }
}

fn hello_details(auth: Option<&Auth>) -> Dict {
    let role = |features: &[&str]| {
        let mut f = Dict::new();
        for name in features {
            f.insert((*name).to_owned(), Value::Bool(true));
        }
        let mut d = Dict::new();
        d.insert("features".to_owned(), Value::Dict(f));
        Value::Dict(d)
    };
    let mut roles = Dict::new();
    roles.insert("publisher".into(), role(&["publisher_exclusion"]));
    roles.insert("subscriber".into(), role(&["pattern_based_subscription"]));
    roles.insert("caller".into(), role(&["call_canceling"]));
    roles.insert("callee".into(), role(&["shared_registration"]));
    let mut details = Dict::new();
    details.insert("roles".into(), Value::Dict(roles));
    details.insert("agent".into(), Value::Str("fox-demos".into()));
    let (method, authid) = match auth {
        None => return details,
        Some(Auth::Ticket { authid, .. }) => ("ticket", authid),
        Some(Auth::WampCra { authid, .. }) => ("wampcra", authid),
    };
    details.insert(
        "authmethods".into(),
        Value::List(vec![Value::Str(method.into())]),
    );
    details.insert("authid".into(), Value::Str(authid.clone()));
    details
}

fn sign(auth: Option<&Auth>, authmethod: &str, extra: &Dict) -> Result<String, Error> {
    match (auth, authmethod) {
        (Some(Auth::Ticket { ticket, .. }), "ticket") => Ok(ticket.clone()),
        (Some(Auth::WampCra { secret, .. }), "wampcra") => {
            let challenge = extra
                .get("challenge")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Protocol("wampcra challenge without `challenge`".into()))?;
            Ok(wampcra_signature(&wampcra_key(secret, extra), challenge))
        }
        _ => Err(Error::Protocol(format!(
            "unexpected challenge for {authmethod}"
        ))),
    }
}

/// The WAMP-CRA key: the secret, or with `salt` in the challenge the base64 of its
/// PBKDF2-HMAC-SHA256 derivation (autobahn's `derive_key`).
pub fn wampcra_key(secret: &str, extra: &Dict) -> Vec<u8> {
    use base64::Engine as _;
    let Some(salt) = extra.get("salt").and_then(Value::as_str) else {
        return secret.as_bytes().to_vec();
    };
    let iterations = extra
        .get("iterations")
        .and_then(Value::as_u64)
        .unwrap_or(1000);
    let keylen = extra
        .get("keylen")
        .and_then(Value::as_u64)
        .unwrap_or(32)
        .min(1024);
    let mut derived = vec![0u8; keylen as usize];
    let iterations = u32::try_from(iterations).unwrap_or(u32::MAX);
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
        secret.as_bytes(),
        salt.as_bytes(),
        iterations,
        &mut derived,
    );
    base64::engine::general_purpose::STANDARD
        .encode(derived)
        .into_bytes()
}

/// base64(HMAC-SHA256(key, challenge)).
pub fn wampcra_signature(key: &[u8], challenge: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(challenge.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Options with `acknowledge: true`.
pub fn acknowledge() -> Dict {
    let mut options = Dict::new();
    options.insert("acknowledge".into(), Value::Bool(true));
    options
}
