//! WampClient against a real foxrouter (built by `cargo build -p fox-router`).

mod common;

use common::{start_router, within};
use fox_demos::wamp::{acknowledge, Auth, Error, Transport, WampClient, WampError};
use fox_wamp_proto::{Dict, Serializer, Value};

async fn joined(url: &str, transport: Transport) -> WampClient {
    let mut client = within(WampClient::connect(url, "realm1", transport))
        .await
        .expect("connect");
    within(client.join(None)).await.expect("join");
    client
}

async fn pubsub_round_trip(transport: Transport, url: &str) {
    let subscriber = joined(url, transport).await;
    let publisher = joined(url, transport).await;
    let (_, mut events) = within(subscriber.subscribe("com.example.topic", Dict::new()))
        .await
        .expect("subscribe");
    let mut kwargs = Dict::new();
    kwargs.insert("k".into(), Value::Str("v".into()));
    let publication = within(publisher.publish(
        "com.example.topic",
        vec![Value::Int(7)],
        kwargs.clone(),
        acknowledge(),
    ))
    .await
    .expect("publish");
    let publication = publication.expect("acknowledged publish returns an id");
    let event = within(events.recv()).await.expect("one event");
    assert_eq!(event.publication, publication);
    assert_eq!(event.args, vec![Value::Int(7)]);
    assert_eq!(event.kwargs, kwargs);
    // Without acknowledge: queued, no ID.
    let none = within(publisher.publish("com.example.topic", vec![], Dict::new(), Dict::new()))
        .await
        .expect("publish");
    assert_eq!(none, None);
    assert!(within(events.recv()).await.is_some());
    within(publisher.leave()).await.expect("leave");
    within(subscriber.leave()).await.expect("leave");
}

#[tokio::test]
async fn websocket_pubsub_with_every_serializer() {
    let router = start_router(None);
    let url = format!("ws://{}/ws", router.ws);
    for serializer in [Serializer::Json, Serializer::MsgPack, Serializer::Cbor] {
        pubsub_round_trip(Transport::WebSocket(serializer), &url).await;
    }
    // host:port alone means path /ws.
    pubsub_round_trip(
        Transport::WebSocket(Serializer::Json),
        &router.ws.to_string(),
    )
    .await;
}

#[tokio::test]
async fn rawsocket_pubsub() {
    let router = start_router(None);
    let addr = router.rawsocket.to_string();
    pubsub_round_trip(Transport::RawSocket(Serializer::MsgPack), &addr).await;
    pubsub_round_trip(Transport::RawSocket(Serializer::Json), &addr).await;
}

#[tokio::test]
async fn rpc_many_calls_in_flight_and_errors() {
    let router = start_router(None);
    let addr = router.rawsocket.to_string();
    let transport = Transport::RawSocket(Serializer::MsgPack);
    let callee = joined(&addr, transport).await;
    let caller = joined(&addr, transport).await;
    within(
        callee.register("com.example.add", Dict::new(), |invocation| async move {
            let sum: i64 = invocation.args.iter().filter_map(Value::as_i64).sum();
            Ok((vec![Value::Int(sum)], Dict::new()))
        }),
    )
    .await
    .expect("register");
    within(
        callee.register("com.example.fail", Dict::new(), |_| async move {
            tokio::task::yield_now().await; // Exercise the spawned (not inline) handler path.
            Err(WampError {
                uri: "com.example.oops".into(),
                args: vec![Value::Str("why".into())],
                kwargs: Dict::new(),
            })
        }),
    )
    .await
    .expect("register");

    let calls = (0..200i64).map(|i| {
        let caller = caller.clone();
        async move {
            caller
                .call(
                    "com.example.add",
                    vec![Value::Int(i), Value::Int(1)],
                    Dict::new(),
                    Dict::new(),
                )
                .await
        }
    });
    let results = within(futures_util::future::join_all(calls)).await;
    for (i, result) in results.into_iter().enumerate() {
        let (args, _) = result.expect("call");
        assert_eq!(args, vec![Value::Int(i as i64 + 1)]);
    }

    match within(caller.call("com.example.fail", vec![], Dict::new(), Dict::new())).await {
        Err(Error::Wamp(error)) => {
            assert_eq!(error.uri, "com.example.oops");
            assert_eq!(error.args, vec![Value::Str("why".into())]);
        }
        other => panic!("expected a WAMP error, got {other:?}"),
    }
    match within(caller.call("com.example.missing", vec![], Dict::new(), Dict::new())).await {
        Err(Error::Wamp(error)) => assert_eq!(error.uri, "wamp.error.no_such_procedure"),
        other => panic!("expected no_such_procedure, got {other:?}"),
    }
}

const AUTH_CONFIG: &str = r#"
[auth]
anonymous = false

[[role]]
name = "backend"
permissions = [ { uri = "", match = "prefix", publish = true, subscribe = true, call = true, register = true } ]

[[user]]
authid = "joe"
secret = "s3cret"
role = "backend"

[[user]]
authid = "salty"
secret = "pw"
role = "backend"
salt = "salt123"
iterations = 100
keylen = 32
"#;

#[tokio::test]
async fn ticket_and_wampcra_authentication() {
    let router = start_router(Some(AUTH_CONFIG));
    let url = format!("ws://{}/ws", router.ws);
    let transport = Transport::WebSocket(Serializer::Json);
    let credentials = [
        Auth::Ticket {
            authid: "joe".into(),
            ticket: "s3cret".into(),
        },
        Auth::WampCra {
            authid: "joe".into(),
            secret: "s3cret".into(),
        },
        Auth::WampCra {
            authid: "salty".into(),
            secret: "pw".into(),
        },
    ];
    for auth in credentials {
        let mut client = within(WampClient::connect(&url, "realm1", transport))
            .await
            .expect("connect");
        let session = within(client.join(Some(auth.clone())))
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e}"));
        assert!(session > 0);
        within(client.leave()).await.expect("leave");
    }
    let mut wrong = within(WampClient::connect(&url, "realm1", transport))
        .await
        .expect("connect");
    let refused = within(wrong.join(Some(Auth::Ticket {
        authid: "joe".into(),
        ticket: "nope".into(),
    })))
    .await;
    assert!(
        matches!(refused, Err(Error::Abort(_)) | Err(Error::Closed)),
        "{refused:?}"
    );
    let mut anonymous = within(WampClient::connect(&url, "realm1", transport))
        .await
        .expect("connect");
    assert!(matches!(
        within(anonymous.join(None)).await,
        Err(Error::Abort(_))
    ));
}

#[tokio::test]
async fn requests_before_join_are_refused() {
    let router = start_router(None);
    let client = within(WampClient::connect(
        &router.rawsocket.to_string(),
        "realm1",
        Transport::RawSocket(Serializer::MsgPack),
    ))
    .await
    .expect("connect");
    assert!(matches!(
        client
            .publish("a.b", vec![], Dict::new(), Dict::new())
            .await,
        Err(Error::State)
    ));
}
