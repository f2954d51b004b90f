use super::*;
use crate::config::Config;

/// The value of the sample `line_start` (name and labels) in `text`.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(line_start)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

#[test]
fn the_exposition_names_every_family_and_counts_what_happened() {
    let router = Router::new(Config::default());
    let metrics = router.metrics();
    let _open = metrics.connection_opened(ConnectionKind::MqttWebSocket);
    metrics.calls(3);
    metrics.auth_failed(Protocol::Wamp);
    let text = render(router.clone(), crate::engine::unix_ms()).unwrap();
    let open = "foxrouter_connections_open{protocol=\"mqtt\",transport=\"websocket\"}";
    assert_eq!(sample(&text, open), Some(1.0), "{text}");
    let total = "foxrouter_connections_total{protocol=\"mqtt\",transport=\"websocket\"}";
    assert_eq!(sample(&text, total), Some(1.0), "{text}");
    assert_eq!(sample(&text, "foxrouter_calls_total"), Some(3.0), "{text}");
    let failures = "foxrouter_auth_failures_total{protocol=\"wamp\"}";
    assert_eq!(sample(&text, failures), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "foxrouter_realms"),
        Some(1.0),
        "realm1: {text}"
    );
    for family in [
        "# TYPE foxrouter_messages_received counter",
        "# TYPE foxrouter_bytes_sent counter",
        "# TYPE foxrouter_sessions gauge",
        "# TYPE foxrouter_retained_keys gauge",
        "# TYPE foxrouter_history_messages gauge",
        "# TYPE foxrouter_backpressure_pauses counter",
        "# TYPE foxrouter_queue_dropped counter",
    ] {
        assert!(text.contains(family), "{family} missing: {text}");
    }
    assert!(!text.contains("store_commit"), "no store without --data");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn a_store_adds_its_commits_and_latency_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let durable =
        Arc::new(crate::durable::Durable::open(dir.path(), fox_storage::SyncMode::None).unwrap());
    let router = Router::with_store(Config::default(), 0, Some(durable));
    let text = render(router, crate::engine::unix_ms()).unwrap();
    assert!(
        text.contains("# TYPE foxrouter_store_commits counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE foxrouter_store_commit_duration_seconds histogram"),
        "{text}"
    );
    let inf = "foxrouter_store_commit_duration_seconds_bucket{le=\"+Inf\"}";
    assert!(sample(&text, inf).is_some(), "{text}");
}
