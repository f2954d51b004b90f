use std::io;

use tokio::sync::mpsc;

use super::*;
use crate::config::Config;
use crate::wamp::session::GOODBYE_WAIT_MS;

/// The test's end of a transport: frames in through a channel.
struct ChannelReader(mpsc::UnboundedReceiver<Vec<u8>>);

impl FrameReader for ChannelReader {
    async fn next_frame(&mut self) -> Option<Incoming> {
        self.0.recv().await.map(Incoming::Frame)
    }

    async fn discard(&mut self) -> usize {
        self.0.recv().await.map_or(0, |frame| frame.len().max(1))
    }
}

/// The test's end of a transport: frames out through a channel (never blocks).
struct ChannelWriter(mpsc::UnboundedSender<Vec<u8>>);

impl FrameWriter for ChannelWriter {
    async fn feed(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.0.send(bytes).map_err(|_| io::Error::other("closed"))
    }

    async fn pong(&mut self, _payload: Vec<u8>) -> io::Result<()> {
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn close(&mut self) {}
}

struct Peer {
    to_router: mpsc::UnboundedSender<Vec<u8>>,
    from_router: mpsc::UnboundedReceiver<Vec<u8>>,
    /// The session ID from WELCOME.
    id: u64,
}

impl Peer {
    /// A JSON session on its own connection task, joined to realm1.
    async fn join(router: &Arc<Router>, name: &str) -> Self {
        let (to_router, incoming) = mpsc::unbounded_channel();
        let (outgoing, from_router) = mpsc::unbounded_channel();
        tokio::spawn(drive(
            router.clone(),
            Serializer::Json,
            ChannelWriter(outgoing),
            ChannelReader(incoming),
            "websocket",
            name.to_owned(),
            None,
        ));
        let mut peer = Self {
            to_router,
            from_router,
            id: 0,
        };
        peer.send(r#"[1,"realm1",{"roles":{"publisher":{},"subscriber":{},"caller":{}}}]"#);
        let welcome = peer.recv().await;
        assert_eq!(welcome[0], 2, "WELCOME");
        peer.id = welcome[1].as_u64().expect("session ID");
        peer
    }

    fn send(&self, json: &str) {
        self.to_router.send(json.as_bytes().to_vec()).expect("open");
    }

    async fn recv(&mut self) -> serde_json::Value {
        let wait = Duration::from_secs(10);
        let frame = tokio::time::timeout(wait, self.from_router.recv())
            .await
            .expect("a message in time")
            .expect("open");
        serde_json::from_slice(&frame).expect("JSON")
    }
}

/// A session the router closes (here: killed) leaves the realm when the router sends
/// GOODBYE, not when the peer's GOODBYE reply arrives: a client that saw the GOODBYE (or
/// closed its transport right after replying) must not find it listed any more.
#[tokio::test]
async fn a_killed_session_is_gone_from_the_realm_when_its_goodbye_is_sent() {
    let router = Router::new(Config::default());
    let mut admin = Peer::join(&router, "admin").await;
    let mut victim = Peer::join(&router, "victim").await;
    admin.send(&format!(
        r#"[48,1,{{}},"wamp.session.kill",[{}]]"#,
        victim.id
    ));
    let goodbye = victim.recv().await;
    assert_eq!(goodbye[0], 6, "GOODBYE: {goodbye}");
    assert_eq!(admin.recv().await[0], 50, "RESULT of the kill");
    // The victim has not answered the GOODBYE yet.
    admin.send(r#"[48,2,{},"wamp.session.list",[]]"#);
    let list = admin.recv().await;
    assert_eq!(list[0], 50, "RESULT: {list}");
    assert_eq!(
        list[3],
        serde_json::json!([[admin.id]]),
        "only the admin is left: {list}"
    );
}

/// A session may hold `limits.subscriptions_per_session_max` subscriptions; one more is
/// refused with `fox.error.limit_exceeded`, subscribing again to a topic it has is not
/// one more, and an unsubscribe makes room.
#[tokio::test]
async fn subscriptions_past_the_limit_are_refused() {
    let mut config = Config::default();
    config.limits.subscriptions_per_session_max = 2;
    let router = Router::new(config);
    let mut peer = Peer::join(&router, "subscriber").await;
    peer.send(r#"[32,1,{},"com.a"]"#);
    let first = peer.recv().await;
    assert_eq!(first[0], 33);
    peer.send(r#"[32,2,{"match":"prefix"},"com."]"#);
    assert_eq!(peer.recv().await[0], 33);
    peer.send(r#"[32,3,{},"com.c"]"#);
    let refused = peer.recv().await;
    assert_eq!(refused[0], 8, "ERROR: {refused}");
    assert_eq!(refused[4], "fox.error.limit_exceeded");
    peer.send(r#"[32,4,{},"com.a"]"#);
    assert_eq!(peer.recv().await[0], 33, "the same topic again");
    peer.send(&format!("[34,5,{}]", first[2]));
    assert_eq!(peer.recv().await[0], 35, "UNSUBSCRIBED");
    peer.send(r#"[32,6,{},"com.c"]"#);
    assert_eq!(peer.recv().await[0], 33, "room again");
}

/// A session may have `limits.calls_in_flight_per_session_max` calls routed and not
/// answered; one more gets `fox.error.limit_exceeded` at once, and a final RESULT makes
/// room (a progressive one does not).
#[tokio::test]
async fn calls_in_flight_past_the_limit_are_refused() {
    let mut config = Config::default();
    config.limits.calls_in_flight_per_session_max = 2;
    let router = Router::new(config);
    let mut callee = Peer::join(&router, "callee").await;
    callee.send(r#"[64,1,{},"com.slow"]"#);
    assert_eq!(callee.recv().await[0], 65, "REGISTERED");
    let mut caller = Peer::join(&router, "caller").await;
    caller.send(r#"[48,1,{"receive_progress":true},"com.slow",[1]]"#);
    caller.send(r#"[48,2,{},"com.slow",[2]]"#);
    let first = callee.recv().await;
    let second = callee.recv().await;
    assert_eq!(
        (first[0].clone(), second[0].clone()),
        (68.into(), 68.into()),
        "INVOCATIONs"
    );
    caller.send(r#"[48,3,{},"com.slow",[3]]"#);
    let refused = caller.recv().await;
    assert_eq!(
        (refused[0].clone(), refused[2].clone()),
        (8.into(), 3.into()),
        "{refused}"
    );
    assert_eq!(refused[4], "fox.error.limit_exceeded");
    // A progressive result does not end the call.
    callee.send(&format!(
        r#"[70,{},{{"progress":true}},["partial"]]"#,
        first[1]
    ));
    assert_eq!(caller.recv().await[0], 50);
    caller.send(r#"[48,4,{},"com.slow",[4]]"#);
    assert_eq!(caller.recv().await[4], "fox.error.limit_exceeded");
    // The final one does.
    callee.send(&format!(r#"[70,{},{{}},["done"]]"#, first[1]));
    assert_eq!(caller.recv().await[3]["progress"], serde_json::Value::Null);
    caller.send(r#"[48,5,{},"com.slow",[5]]"#);
    let invocation = callee.recv().await;
    assert_eq!(invocation[0], 68, "room again: {invocation}");
    assert_eq!(invocation[4], serde_json::json!([5]));
}

/// A writer whose peer stops reading once `stalled` is set: every write then waits
/// forever, as a socket write does when the peer's window and our buffer are full.
struct StallingWriter {
    out: mpsc::UnboundedSender<Vec<u8>>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl StallingWriter {
    async fn stall_if_set(&self) {
        if self.stalled.load(std::sync::atomic::Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    }
}

impl FrameWriter for StallingWriter {
    async fn feed(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.stall_if_set().await;
        self.out.send(bytes).map_err(|_| io::Error::other("closed"))
    }

    async fn pong(&mut self, _payload: Vec<u8>) -> io::Result<()> {
        self.stall_if_set().await;
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.stall_if_set().await;
        Ok(())
    }

    async fn close(&mut self) {
        self.stall_if_set().await;
    }
}

/// A session the router ends (here: at shutdown) whose client has stopped reading: the
/// GOODBYE cannot be written, and the connection still ends within the closing
/// deadline instead of holding its socket and buffers forever.
#[tokio::test]
async fn a_goodbye_to_a_peer_that_stopped_reading_ends_the_connection_in_time() {
    let router = Router::new(Config::default());
    let (to_router, incoming) = mpsc::unbounded_channel::<Vec<u8>>();
    let (outgoing, mut from_router) = mpsc::unbounded_channel();
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = StallingWriter {
        out: outgoing,
        stalled: stalled.clone(),
    };
    let connection = tokio::spawn(drive(
        router.clone(),
        Serializer::Json,
        writer,
        ChannelReader(incoming),
        "websocket",
        "stalled".to_owned(),
        None,
    ));
    to_router
        .send(br#"[1,"realm1",{"roles":{"subscriber":{}}}]"#.to_vec())
        .unwrap();
    let welcome = from_router.recv().await.expect("WELCOME");
    assert_eq!(welcome[..2], *b"[2");
    stalled.store(true, std::sync::atomic::Ordering::Release);
    let started = Instant::now();
    router.shut_down();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the connection ends although its GOODBYE cannot be written")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(GOODBYE_WAIT_MS + CLOSE_WAIT_MS + 500),
        "{took:?}"
    );
    // The reader is still open: the peer did not go away, the router let go of it.
    drop(to_router);
}

/// Backpressure on WAMP: a publisher that sends faster than its subscriber drains
/// is paused (its frames wait) instead of having its events dropped at the full queue.
#[tokio::test]
async fn a_flat_out_publisher_waits_for_its_subscriber_instead_of_losing_events() {
    const COUNT: u64 = 3_000;
    let mut config = Config::default();
    config.limits.session_queue_max = 64;
    let router = Router::new(config);
    let mut subscriber = Peer::join(&router, "subscriber").await;
    subscriber.send(r#"[32,1,{},"com.flood"]"#);
    assert_eq!(subscriber.recv().await[0], 33, "SUBSCRIBED");
    let publisher = Peer::join(&router, "publisher").await;
    for i in 0..COUNT {
        publisher.send(&format!(r#"[16,{},{{}},"com.flood",[{i}]]"#, i + 1));
    }
    let mut got = Vec::new();
    while got.len() < COUNT as usize {
        let event = subscriber.recv().await;
        assert_eq!(event[0], 36, "EVENT: {event}");
        got.push(event[4][0].as_u64().expect("argument"));
    }
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>(), "every event, in order");
}

/// What an idle WAMP connection costs is mostly its future (issue 19): the connection's
/// state lives in it once (`Connection::finish` borrows it; taking it by value put a
/// second copy in the future, 1.8 KiB more per idle connection). Measured 2,208 bytes
/// (debug) when this test was written, 3,936 with `finish(self)`.
#[tokio::test]
async fn the_connection_future_stays_small() {
    let router = Router::new(crate::config::Config::default());
    let (_to_router, incoming) = mpsc::unbounded_channel();
    let (outgoing, _from_router) = mpsc::unbounded_channel();
    let connection = drive(
        router,
        Serializer::Json,
        ChannelWriter(outgoing),
        ChannelReader(incoming),
        "websocket",
        String::new(),
        None,
    );
    let size = std::mem::size_of_val(&connection);
    assert!(size <= 2_400, "the WAMP connection future is {size} bytes");
}
