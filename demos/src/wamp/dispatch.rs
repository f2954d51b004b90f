//! The reader task: decodes every message from the router and hands it to whoever waits
//! for it (a pending request, a subscription's event channel, a procedure's handler).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};

use fox_wamp_proto::{code, Dict, Id, Message, Serializer, ID_MAX};

use super::transport::{FrameReader, Outgoing};
use super::{CallResult, Error, Event, Handler, Invocation, WampError, MESSAGE_SIZE_MAX_BYTES};

/// A request waiting for its answer.
pub(crate) enum Pending {
    Publish(oneshot::Sender<Result<Id, Error>>),
    Subscribe(mpsc::Sender<Event>, oneshot::Sender<Result<Id, Error>>),
    Call(oneshot::Sender<Result<CallResult, Error>>),
    Register(Handler, oneshot::Sender<Result<Id, Error>>),
}

/// State shared by the client handles and the reader task.
pub(crate) struct Shared {
    serializer: Serializer,
    out: mpsc::Sender<Outgoing>,
    request_last: AtomicU64,
    pending: Mutex<HashMap<Id, Pending>>,
    subscriptions: Mutex<HashMap<Id, Vec<mpsc::Sender<Event>>>>,
    registrations: Mutex<HashMap<Id, Handler>>,
    pub(crate) goodbye: Mutex<Option<oneshot::Sender<()>>>,
    /// Becomes `true` when the connection has ended.
    pub(crate) closed: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(serializer: Serializer, out: mpsc::Sender<Outgoing>) -> Self {
        Shared {
            serializer,
            out,
            request_last: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashMap::new()),
            registrations: Mutex::new(HashMap::new()),
            goodbye: Mutex::new(None),
            closed: watch::Sender::new(false),
        }
    }

    /// The next request ID (session scope, 1..=2^53, wrapping).
    pub(crate) fn next_request(&self) -> Id {
        let n = self.request_last.fetch_add(1, Ordering::Relaxed);
        n % ID_MAX + 1
    }

    /// Queues `message` for the writer task.
    pub(crate) async fn send(&self, message: &Message) -> Result<(), Error> {
        let bytes = self.serializer.encode(message);
        self.out
            .send(Outgoing::Message(bytes))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Records `pending` under `request`, then sends `message`.
    pub(crate) async fn request(
        &self,
        request: Id,
        pending: Pending,
        message: &Message,
    ) -> Result<(), Error> {
        self.pending
            .lock()
            .map_err(|_| Error::Closed)?
            .insert(request, pending);
        let sent = self.send(message).await;
        if sent.is_err() {
            if let Ok(mut map) = self.pending.lock() {
                map.remove(&request);
            }
        }
        sent
    }

    fn take_pending(&self, request: Id) -> Option<Pending> {
        self.pending.lock().ok()?.remove(&request)
    }
}

/// Reads until the connection ends, then fails every pending request with `Closed`.
pub(crate) async fn read_loop(mut reader: FrameReader, shared: Arc<Shared>) {
    loop {
        let bytes = match reader.next(&shared.out).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(%error, "wamp connection ended");
                break;
            }
        };
        let message = match shared.serializer.decode(&bytes, MESSAGE_SIZE_MAX_BYTES) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "undecodable message from router");
                break;
            }
        };
        if !handle(&shared, message).await {
            break;
        }
    }
    close(&shared);
}

fn close(shared: &Shared) {
    shared.closed.send_replace(true);
    if let Ok(mut pending) = shared.pending.lock() {
        pending.clear(); // Dropping the senders wakes every waiter with `Closed`.
    }
    if let Ok(mut subscriptions) = shared.subscriptions.lock() {
        subscriptions.clear();
    }
    if let Ok(mut goodbye) = shared.goodbye.lock() {
        if let Some(tx) = goodbye.take() {
            let _ = tx.send(());
        }
    }
}

/// Handles one message; `false` ends the session.
async fn handle(shared: &Arc<Shared>, message: Message) -> bool {
    match message {
        Message::Event {
            subscription,
            publication,
            details,
            args,
            kwargs,
        } => {
            deliver(
                shared,
                subscription,
                Event {
                    publication,
                    details,
                    args: args.unwrap_or_default(),
                    kwargs: kwargs.unwrap_or_default(),
                },
            )
            .await;
        }
        Message::Result {
            request,
            args,
            kwargs,
            ..
        } => {
            if let Some(Pending::Call(tx)) = shared.take_pending(request) {
                let _ = tx.send(Ok((args.unwrap_or_default(), kwargs.unwrap_or_default())));
            }
        }
        Message::Published {
            request,
            publication,
        } => {
            if let Some(Pending::Publish(tx)) = shared.take_pending(request) {
                let _ = tx.send(Ok(publication));
            }
        }
        Message::Invocation {
            request,
            registration,
            details,
            args,
            kwargs,
        } => {
            let invocation = Invocation {
                details,
                args: args.unwrap_or_default(),
                kwargs: kwargs.unwrap_or_default(),
            };
            invoke(shared, request, registration, invocation).await;
        }
        Message::Subscribed {
            request,
            subscription,
        } => subscribed(shared, request, subscription),
        Message::Registered {
            request,
            registration,
        } => registered(shared, request, registration),
        Message::Error {
            request_type,
            request,
            error,
            args,
            kwargs,
            ..
        } => {
            let error = WampError {
                uri: error,
                args: args.unwrap_or_default(),
                kwargs: kwargs.unwrap_or_default(),
            };
            fail(shared, request_type, request, error);
        }
        Message::Goodbye { .. } => {
            let asked = shared.goodbye.lock().map(|g| g.is_some()).unwrap_or(false);
            if !asked {
                let reply = Message::Goodbye {
                    details: Dict::new(),
                    reason: "wamp.close.goodbye_and_out".into(),
                };
                let _ = shared.send(&reply).await;
            }
            return false;
        }
        Message::Abort { reason, .. } => {
            tracing::warn!(%reason, "router aborted the session");
            return false;
        }
        other => tracing::debug!(code = other.code(), "ignored message"),
    }
    true
}

async fn deliver(shared: &Shared, subscription: Id, event: Event) {
    let senders = match shared.subscriptions.lock() {
        Ok(map) => map.get(&subscription).cloned(),
        Err(_) => None,
    };
    let Some(senders) = senders else { return };
    if let Some((last, rest)) = senders.split_last() {
        for sender in rest {
            let _ = sender.send(event.clone()).await;
        }
        let _ = last.send(event).await;
    }
}

fn subscribed(shared: &Shared, request: Id, subscription: Id) {
    if let Some(Pending::Subscribe(events, tx)) = shared.take_pending(request) {
        if let Ok(mut map) = shared.subscriptions.lock() {
            map.entry(subscription).or_default().push(events);
        }
        let _ = tx.send(Ok(subscription));
    }
}

fn registered(shared: &Shared, request: Id, registration: Id) {
    if let Some(Pending::Register(handler, tx)) = shared.take_pending(request) {
        if let Ok(mut map) = shared.registrations.lock() {
            map.insert(registration, handler);
        }
        let _ = tx.send(Ok(registration));
    }
}

fn fail(shared: &Shared, request_type: u64, request: Id, error: WampError) {
    let Some(pending) = shared.take_pending(request) else {
        return;
    };
    let error = Error::Wamp(error);
    match (request_type, pending) {
        (code::PUBLISH, Pending::Publish(tx)) => drop(tx.send(Err(error))),
        (code::SUBSCRIBE, Pending::Subscribe(_, tx)) => drop(tx.send(Err(error))),
        (code::CALL, Pending::Call(tx)) => drop(tx.send(Err(error))),
        (code::REGISTER, Pending::Register(_, tx)) => drop(tx.send(Err(error))),
        (_, other) => {
            // Same request ID, different kind: not ours to fail; put it back.
            if let Ok(mut map) = shared.pending.lock() {
                map.insert(request, other);
            }
        }
    }
}

async fn invoke(shared: &Arc<Shared>, request: Id, registration: Id, invocation: Invocation) {
    let handler = shared
        .registrations
        .lock()
        .ok()
        .and_then(|m| m.get(&registration).cloned());
    let Some(handler) = handler else {
        let error = WampError::new("wamp.error.no_such_registration");
        let _ = shared.send(&invocation_error(request, error)).await;
        return;
    };
    let mut future = handler(invocation);
    // Fast path: most handlers finish at once; run them inline, no task spawned.
    if let Some(outcome) = (&mut future).now_or_never() {
        let _ = shared.send(&yield_message(request, outcome)).await;
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let outcome = future.await;
        let _ = shared.send(&yield_message(request, outcome)).await;
    });
}

fn yield_message(request: Id, outcome: Result<CallResult, WampError>) -> Message {
    match outcome {
        Ok((args, kwargs)) => Message::Yield {
            request,
            options: Dict::new(),
            args: Some(args),
            kwargs: if kwargs.is_empty() {
                None
            } else {
                Some(kwargs)
            },
        },
        Err(error) => invocation_error(request, error),
    }
}

fn invocation_error(request: Id, error: WampError) -> Message {
    Message::Error {
        request_type: code::INVOCATION,
        request,
        details: Dict::new(),
        error: error.uri,
        args: Some(error.args),
        kwargs: Some(error.kwargs),
    }
}
