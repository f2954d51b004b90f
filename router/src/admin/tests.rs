//! The admin listener over real loopback TCP, with a minimal HTTP/1.1 client.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::Config;
use crate::realm::{Payload, PublishOptions};
use crate::topic::Topic;

/// A response: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
async fn request(address: SocketAddr, method: &str, path: &str, extra: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(address: SocketAddr, path: &str) -> Answer {
    request(address, "GET", path, "").await
}

/// An admin listener on a free loopback port, with the router set unless `starting`.
async fn start(config: Config, starting: bool) -> (SocketAddr, Arc<Router>, AdminServer) {
    let mut settings = config.admin.clone();
    settings.listen = AdminListen::At("127.0.0.1:0".parse().unwrap());
    let listener = bind(&settings).await.unwrap().expect("bound");
    let address = listener.local_addr();
    let admin = Admin::new(settings.token.as_deref());
    let server = listener.spawn(admin.clone());
    let router = Router::new(config);
    if !starting {
        admin.serve_router(router.clone(), vec![("ws", "127.0.0.1:9".parse().unwrap())]);
    }
    (address, router, server)
}

#[tokio::test]
async fn a_token_guards_everything_but_healthz() {
    let mut config = Config::default();
    config.admin.token = Some("s3cret".into());
    let (address, _router, server) = start(config, false).await;
    assert_eq!(get(address, "/healthz").await.json()["status"], "up");
    for path in ["/metrics", "/readyz", "/api/v1/status", "/api/v1/sessions"] {
        let refused = get(address, path).await;
        assert_eq!(refused.status, 401, "{path}");
        assert!(refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("bearer token"));
        assert!(refused
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")));
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic czNjcmV0", "Bearer"] {
            let header = format!("Authorization: {wrong}\r\n");
            let answer = request(address, "GET", path, &header).await;
            assert_eq!(answer.status, 401, "{path} with {wrong}");
        }
        let answer = request(address, "GET", path, "Authorization: bearer s3cret\r\n").await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let (address, _router, server) = start(Config::default(), false).await;
    let missing = get(address, "/api/v1/nothing").await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"]
        .as_str()
        .unwrap()
        .contains("/api/v1/nothing"));
    let wrong = request(address, "POST", "/metrics", "Content-Length: 0\r\n").await;
    assert_eq!(wrong.status, 405);
    assert!(wrong.json()["error"].as_str().unwrap().contains("POST"));
    let wrong = request(address, "GET", "/api/v1/sessions/12", "").await;
    assert_eq!(wrong.status, 405, "{}", wrong.body);
    server.stop().await;
}

#[tokio::test]
async fn until_the_router_runs_readyz_and_the_api_say_starting() {
    let (address, _router, server) = start(Config::default(), true).await;
    assert_eq!(get(address, "/healthz").await.status, 200);
    let ready = get(address, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "not ready");
    for path in ["/api/v1/status", "/metrics"] {
        let answer = get(address, path).await;
        assert_eq!(answer.status, 503, "{path}");
        assert!(answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("starting"));
    }
    server.stop().await;
}

#[tokio::test]
async fn readyz_turns_503_when_the_router_shuts_down() {
    let (address, router, server) = start(Config::default(), false).await;
    let ready = get(address, "/readyz").await;
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (200, "ready".into())
    );
    assert_eq!(ready.json()["checks"]["listeners"]["ws"], "127.0.0.1:9");
    router.shut_down();
    let ready = get(address, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("shutting down"), "{}", ready.body);
    server.stop().await;
}

#[tokio::test]
async fn listings_check_their_parameters() {
    let (address, router, server) = start(Config::default(), false).await;
    for (path, needle) in [
        ("/api/v1/sessions?limit=0", "limit"),
        ("/api/v1/sessions?limit=abc", "limit"),
        ("/api/v1/sessions?offset=-1", "offset"),
        ("/api/v1/sessions?protocol=xmpp", "protocol"),
        ("/api/v1/sessions?colour=red", "colour"),
        ("/api/v1/subscriptions?limit=5000", "limit"),
        ("/api/v1/status?x=1", "'x'"),
    ] {
        let answer = get(address, path).await;
        assert_eq!(answer.status, 400, "{path}");
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(needle), "{path}: {error}");
    }
    let unknown_realm = get(address, "/api/v1/registrations?realm=nope").await;
    assert_eq!(unknown_realm.status, 404);
    assert!(
        router.realms().iter().all(|r| r.name != "nope"),
        "not created"
    );
    let empty = get(address, "/api/v1/sessions").await.json();
    assert_eq!(
        (empty["total"].clone(), empty["limit"].clone()),
        (0.into(), 100.into())
    );
    server.stop().await;
}

#[tokio::test]
async fn kicking_needs_a_known_session_id() {
    let (address, _router, server) = start(Config::default(), false).await;
    for id in ["0", "abc", "9007199254740993", "-4"] {
        let answer = request(address, "DELETE", &format!("/api/v1/sessions/{id}"), "").await;
        assert_eq!(answer.status, 400, "{id}: {}", answer.body);
    }
    let answer = request(address, "DELETE", "/api/v1/sessions/77", "").await;
    assert_eq!(answer.status, 404);
    assert!(answer.json()["error"].as_str().unwrap().contains("77"));
    server.stop().await;
}

#[tokio::test]
async fn retained_messages_are_listed_by_prefix_in_either_spelling() {
    let (address, router, server) = start(Config::default(), false).await;
    let realm = router.realm("realm1").unwrap();
    let retain = PublishOptions {
        retain: true,
        ..PublishOptions::default()
    };
    for (topic, payload) in [
        ("sensors/a", Payload::Raw("21.5".into())),
        ("sensors/b", Payload::Raw(vec![0xff, 0x00].into())),
        ("other/c", Payload::Raw("x".into())),
    ] {
        realm.publish(None, &Topic::from_mqtt(topic), payload, &retain);
    }
    for prefix in ["sensors/", "sensors."] {
        let listed = get(address, &format!("/api/v1/retained?prefix={prefix}"))
            .await
            .json();
        assert_eq!(listed["total"], 2, "{prefix}: {listed}");
        let first = &listed["retained"][0];
        assert_eq!(first["mqtt_topic"], "sensors/a");
        assert_eq!(first["topic"], "sensors.a");
        assert_eq!(first["payload"], "21.5");
        assert_eq!(listed["retained"][1]["payload_base64"], "/wA=");
    }
    let page = get(address, "/api/v1/retained?offset=2&limit=1")
        .await
        .json();
    assert_eq!(page["total"], 3);
    assert_eq!(
        page["retained"][0]["mqtt_topic"], "sensors/b",
        "topic order"
    );
    server.stop().await;
}

#[test]
fn bearer_tokens_are_read_from_the_header_value() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearer "), None);
    assert_eq!(bearer_token("Bearerabc"), None);
}

/// Opens `GET path` and reads until the first complete event (or the end): the status and
/// what was read. The stream stays open while the returned connection lives.
async fn open_events(
    address: SocketAddr,
    path: &str,
    extra: &str,
) -> (u16, String, tokio::net::TcpStream) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    let deadline = std::time::Duration::from_secs(10);
    while !(text.contains("\r\n\r\n") && (text.contains("}\n") || !text.contains(" 200 "))) {
        let read = tokio::time::timeout(deadline, stream.read(&mut buffer))
            .await
            .expect("an event in time")
            .unwrap();
        if read == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text, stream)
}

#[tokio::test]
async fn the_event_stream_takes_the_token_in_the_header_or_the_query() {
    let mut config = Config::default();
    config.admin.token = Some("s3cret".into());
    let (address, _router, server) = start(config, false).await;
    for (path, header) in [
        ("/api/v1/events", ""),
        ("/api/v1/events?token=s3cre", ""),
        ("/api/v1/events?token=", ""),
        ("/api/v1/events?token=s3cret&x=1", ""),
        ("/api/v1/events", "Authorization: Bearer nope\r\n"),
        ("/api/v1/status?token=s3cret", ""),
    ] {
        let answer = request(address, "GET", path, header).await;
        assert_eq!(answer.status, 401, "{path} {header}: {}", answer.body);
        assert!(answer.header("www-authenticate").is_some(), "{path}");
    }
    let page = get(address, "/").await;
    assert_eq!(page.status, 200, "the page holds no data: no token");
    assert!(page.body.contains("EventSource"));
    for (path, header) in [
        ("/api/v1/events?token=s3cret", ""),
        ("/api/v1/events", "Authorization: Bearer s3cret\r\n"),
    ] {
        let (status, text, _stream) = open_events(address, path, header).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert!(text.contains("text/event-stream"), "{text}");
        assert!(text.contains("event: snapshot\ndata: {"), "{text}");
    }
    let header = "Authorization: Bearer s3cret\r\n";
    let (status, text, _stream) = open_events(address, "/api/v1/events?x=1", header).await;
    assert_eq!(status, 400, "a bad query, once admitted: {text}");
    server.stop().await;
}

#[tokio::test]
async fn a_stream_gives_its_room_back_when_its_client_goes_away() {
    let (address, _router, server) = start(Config::default(), false).await;
    let admin = server.admin.clone().expect("a router's admin");
    let room = || admin.event_streams.available_permits();
    let (status, _, connection) = open_events(address, "/api/v1/events", "").await;
    assert_eq!(status, 200);
    assert_eq!(room(), events::EVENT_STREAMS_MAX - 1);
    drop(connection);
    // The next write (within a second) fails and drops the stream.
    for _ in 0..50 {
        if room() == events::EVENT_STREAMS_MAX {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(room(), events::EVENT_STREAMS_MAX);
    server.stop().await;
}

#[tokio::test]
async fn streams_end_when_the_listener_stops() {
    let (address, _router, server) = start(Config::default(), false).await;
    let (status, _, mut connection) = open_events(address, "/api/v1/events", "").await;
    assert_eq!(status, 200);
    let admin = server.admin.clone().expect("a router's admin");
    server.stop().await;
    let mut rest = Vec::new();
    let read = connection.read_to_end(&mut rest);
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("the stream ends")
        .unwrap();
    assert_eq!(
        admin.event_streams.available_permits(),
        events::EVENT_STREAMS_MAX
    );
}
