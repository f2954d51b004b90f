//! `foxrouter ctl status | sessions | kick ID`: the admin listener's JSON API from the
//! command line (`docs/admin.md`). Plain HTTP; the token from `--token` or the
//! environment's `FOXROUTER_CTL_TOKEN`.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Largest answer read.
const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What to ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /api/v1/status`, printed as indented JSON.
    Status,
    /// `GET /api/v1/sessions` (every page), printed as a table.
    Sessions,
    /// `DELETE /api/v1/sessions/{id}`.
    Kick(u64),
}

/// Runs one request against the admin listener at `base` (`http://host:port`) and
/// returns what to print; `Err` with the reason (the listener's JSON error when it gave
/// one).
pub async fn run(base: &str, token: Option<&str>, request: Request) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(format!("--admin {base}: only http:// URLs are supported"));
    }
    match request {
        Request::Status => {
            let status = call(base, token, "GET", "/api/v1/status").await?;
            serde_json::to_string_pretty(&status).map_err(|e| e.to_string())
        }
        Request::Sessions => {
            let mut rows = Vec::new();
            let mut offset = 0;
            loop {
                let page = call(
                    base,
                    token,
                    "GET",
                    &format!("/api/v1/sessions?offset={offset}&limit=1000"),
                )
                .await?;
                let items = page["sessions"].as_array().cloned().unwrap_or_default();
                offset += items.len();
                rows.extend(items);
                let total = page["total"].as_u64().unwrap_or(0) as usize;
                if offset >= total || rows.is_empty() {
                    break;
                }
            }
            Ok(sessions_table(&rows))
        }
        Request::Kick(id) => {
            let answer = call(base, token, "DELETE", &format!("/api/v1/sessions/{id}")).await?;
            Ok(format!(
                "session {id}: {}",
                answer["action"].as_str().unwrap_or("done")
            ))
        }
    }
}

/// One request; the answer's JSON, or the error (the listener's `error` field when it
/// answered with one).
async fn call(
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> Result<serde_json::Value, String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if let Some(token) = token {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Empty::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{base}: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), ANSWER_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{status}: not a JSON answer ({e})"))?;
        if !status.is_success() {
            let why = json["error"].as_str().unwrap_or("no reason given");
            return Err(format!("{status}: {why}"));
        }
        Ok(json)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{base}: no answer within {REQUEST_TIMEOUT:?}"))?
}

/// One line per session, under a header.
fn sessions_table(rows: &[serde_json::Value]) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut lines = vec![format!(
        "{:<18} {:<5} {:<10} {:<12} {:<24} {:<22} {:>9} {:>9}",
        "ID", "PROTO", "TRANSPORT", "REALM", "AUTHID", "PEER", "RECEIVED", "SENT"
    )];
    for row in rows {
        lines.push(format!(
            "{:<18} {:<5} {:<10} {:<12} {:<24} {:<22} {:>9} {:>9}",
            text(&row["id"]),
            text(&row["protocol"]),
            text(&row["transport"]),
            text(&row["realm"]),
            text(&row["authid"]),
            text(&row["peer"]),
            text(&row["messages_received"]),
            text(&row["messages_sent"]),
        ));
    }
    lines.push(format!("{} sessions", rows.len()));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_header_a_line_per_session_and_a_count() {
        let rows = vec![serde_json::json!({
            "id": 7, "protocol": "mqtt", "transport": "tcp", "realm": "realm1",
            "authid": "sensor-7", "peer": null, "messages_received": 3, "messages_sent": 4
        })];
        let table = sessions_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID"));
        assert!(
            lines[1].starts_with("7 ") && lines[1].contains("sensor-7") && lines[1].contains(" - ")
        );
        assert_eq!(lines[2], "1 sessions");
    }

    #[tokio::test]
    async fn https_and_unreachable_listeners_are_errors_not_panics() {
        let https = run("https://127.0.0.1:1", None, Request::Status)
            .await
            .unwrap_err();
        assert!(https.contains("only http://"), "{https}");
        let closed = run("http://127.0.0.1:1", None, Request::Status)
            .await
            .unwrap_err();
        assert!(closed.contains("127.0.0.1:1"), "{closed}");
    }
}
