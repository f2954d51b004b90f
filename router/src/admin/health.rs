//! `GET /healthz`: the process is up. `GET /readyz`: it can serve clients — the router runs
//! (store open, every configured client listener bound), it is not shutting down, and
//! with `--data` the store takes writes. 503 with the reasons otherwise.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::Admin;

/// `GET /healthz`.
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "up" }))
}

/// `GET /readyz`.
pub(super) async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    let facts = match admin.serving.get() {
        None => Facts::default(),
        Some(serving) => Facts {
            running: true,
            shutting_down: serving.router.is_shutting_down(),
            listeners: serving.listeners.clone(),
            cluster: serving
                .router
                .shared()
                .engine
                .cluster()
                .map(|view| ClusterFacts {
                    ndb: view.linked("ndb"),
                    sync: view.linked("sync"),
                }),
            store: serving.router.shared().durable().map(|durable| {
                let stats = durable.commit_stats();
                StoreFacts {
                    committer_running: stats.running,
                    failing: stats.failing,
                }
            }),
        },
    };
    let readiness = assess(&facts);
    let status = if readiness.reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness.body())).into_response()
}

/// What readiness is judged on.
#[derive(Debug, Default)]
struct Facts {
    /// The router is built (store open and restored, client listeners bound).
    running: bool,
    shutting_down: bool,
    /// The client listeners: (gate, address).
    listeners: Vec<(&'static str, SocketAddr)>,
    /// With `--data`.
    store: Option<StoreFacts>,
    /// On a cluster entry.
    cluster: Option<ClusterFacts>,
}

/// A cluster entry's links: (linked, total) ndb and sync nodes.
#[derive(Debug)]
struct ClusterFacts {
    ndb: (usize, usize),
    sync: (usize, usize),
}

#[derive(Debug)]
struct StoreFacts {
    committer_running: bool,
    failing: bool,
}

/// The verdict: each check's state, and why not ready (empty: ready).
#[derive(Debug)]
struct Readiness {
    checks: serde_json::Map<String, Value>,
    reasons: Vec<&'static str>,
}

impl Readiness {
    fn body(self) -> Value {
        let ready = self.reasons.is_empty();
        let mut body = json!({
            "status": if ready { "ready" } else { "not ready" },
            "checks": self.checks,
        });
        if !ready {
            body["reasons"] = json!(self.reasons);
        }
        body
    }
}

fn assess(facts: &Facts) -> Readiness {
    let mut checks = serde_json::Map::new();
    let mut reasons = Vec::new();
    if !facts.running {
        checks.insert("router".into(), json!("starting"));
        reasons.push("the router is starting: opening the store, binding its listeners");
        return Readiness { checks, reasons };
    }
    if facts.shutting_down {
        checks.insert("router".into(), json!("shutting down"));
        reasons.push("the router is shutting down");
    } else {
        checks.insert("router".into(), json!("running"));
    }
    let listeners: serde_json::Map<String, Value> = facts
        .listeners
        .iter()
        .map(|(gate, address)| ((*gate).to_owned(), json!(address.to_string())))
        .collect();
    checks.insert("listeners".into(), Value::Object(listeners));
    let store = match &facts.store {
        None => "in memory",
        Some(store) if !store.committer_running => {
            reasons.push("the store's committer stopped: writes cannot be made durable");
            "stopped"
        }
        Some(store) if store.failing => {
            reasons.push("the store refuses writes (the last group commit failed)");
            "failing"
        }
        Some(_) => "open",
    };
    checks.insert("store".into(), json!(store));
    if let Some(cluster) = &facts.cluster {
        // An acknowledgement needs a majority of each tier: without links to one, every
        // acknowledged publish would be refused.
        let majority = |(linked, total): (usize, usize)| linked > total / 2;
        if !majority(cluster.ndb) {
            reasons
                .push("no link to a majority of the ndb nodes: publishes cannot be acknowledged");
        }
        if !majority(cluster.sync) {
            reasons
                .push("no link to a majority of the sync nodes: publishes cannot be acknowledged");
        }
        checks.insert(
            "cluster".into(),
            json!({
                "ndb_linked": cluster.ndb.0, "ndb": cluster.ndb.1,
                "sync_linked": cluster.sync.0, "sync": cluster.sync.1,
            }),
        );
    }
    Readiness { checks, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Facts {
        Facts {
            running: true,
            shutting_down: false,
            listeners: vec![("ws", "127.0.0.1:8080".parse().unwrap())],
            store: Some(StoreFacts {
                committer_running: true,
                failing: false,
            }),
            cluster: None,
        }
    }

    #[test]
    fn a_cluster_entry_without_a_majority_of_a_tier_is_not_ready() {
        let entry = |ndb, sync| Facts {
            cluster: Some(ClusterFacts { ndb, sync }),
            ..running()
        };
        assert!(assess(&entry((2, 3), (3, 3))).reasons.is_empty());
        let reasons = assess(&entry((1, 3), (2, 3))).reasons;
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("ndb"), "{reasons:?}");
        let reasons = assess(&entry((3, 3), (1, 3))).reasons;
        assert!(
            reasons.len() == 1 && reasons[0].contains("sync"),
            "{reasons:?}"
        );
        let body = assess(&entry((3, 3), (3, 3))).body();
        assert_eq!(body["checks"]["cluster"]["sync_linked"], 3);
    }

    #[test]
    fn a_running_router_with_a_working_store_is_ready() {
        let body = assess(&running()).body();
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["store"], "open");
        assert_eq!(body["checks"]["listeners"]["ws"], "127.0.0.1:8080");
        assert!(body.get("reasons").is_none(), "{body}");
        let in_memory = Facts {
            store: None,
            ..running()
        };
        assert_eq!(assess(&in_memory).body()["checks"]["store"], "in memory");
    }

    #[test]
    fn each_failed_check_is_a_reason() {
        let starting = assess(&Facts::default());
        assert_eq!(starting.reasons.len(), 1);
        assert!(starting.reasons[0].contains("starting"));
        let mut facts = running();
        facts.shutting_down = true;
        facts.store = Some(StoreFacts {
            committer_running: true,
            failing: true,
        });
        let body = assess(&facts).body();
        assert_eq!(body["status"], "not ready");
        assert_eq!(body["reasons"].as_array().map(Vec::len), Some(2), "{body}");
        assert_eq!(body["checks"]["store"], "failing");
        facts.store = Some(StoreFacts {
            committer_running: false,
            failing: false,
        });
        let body = assess(&facts).body();
        assert_eq!(body["checks"]["store"], "stopped");
    }
}
