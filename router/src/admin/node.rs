//! The admin listener of an ndb or sync node (`admin` of its `[[node]]` in
//! `cluster.toml`): `GET /healthz`, `GET /readyz`, `GET /metrics` and
//! `GET /api/v1/status` and `GET /api/v1/gossip` (what this node's gossip shows, as on
//! an entry), read from the node's driver ([`fox_cluster::NodeStatus`], updated
//! after every turn) and its mesh. Loopback only (the cluster file refuses another
//! address): it has no token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use fox_cluster::{Mesh, NodeStatus, Role};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{AdminListener, AdminServer};

/// What the node's admin listener reads.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// This node's ID.
    pub id: u32,
    /// `Ndb` or `Sync`.
    pub role: Role,
    /// Every node of the cluster file: (ID, role).
    pub members: Vec<(u32, Role)>,
    /// The node's mesh (links and counters).
    pub mesh: Mesh,
    /// The driver's reports.
    pub status: watch::Receiver<NodeStatus>,
    /// When the node started (Unix ms).
    pub started_ms: u64,
    /// The node's gossip (`None`: turned off).
    pub gossip: Option<Arc<crate::gossip::Gossip>>,
}

impl NodeView {
    /// (linked, total) among the other members of `role`.
    fn linked(&self, role: Role) -> (usize, usize) {
        let others: Vec<u32> = self
            .members
            .iter()
            .filter(|(id, r)| *r == role && *id != self.id)
            .map(|(id, _)| *id)
            .collect();
        let linked = others
            .iter()
            .filter(|id| self.mesh.is_linked(fox_sequencer::NodeId(**id)))
            .count();
        (linked, others.len())
    }

    /// Why the node cannot do its part now (empty: ready). An ndb needs a link to a
    /// majority of the sync nodes (they resolve its segments); a sync node needs a known
    /// leader (its tier can vote).
    fn not_ready(&self, status: &NodeStatus) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        match self.role {
            Role::Ndb => {
                if status.catching_up {
                    reasons.push(
                        "pulling a peer's checkpoint: it stores and serves nothing until it is swapped in",
                    );
                }
                let (linked, total) = self.linked(Role::Sync);
                if linked <= total / 2 {
                    reasons.push(
                        "no link to a majority of the sync nodes: segments cannot be resolved",
                    );
                }
            }
            _ => {
                if status.leader_id.is_none() {
                    reasons.push("no sync leader known: the tier cannot vote");
                }
            }
        }
        reasons
    }
}

impl AdminListener {
    /// Serves an ndb or sync node's admin endpoints on the current runtime.
    pub fn spawn_node(self, view: NodeView) -> AdminServer {
        let app = axum::Router::new()
            .route(
                "/healthz",
                get(|| async { Json(json!({ "status": "up" })) }),
            )
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/api/v1/status", get(status))
            .route("/api/v1/gossip", get(gossip))
            .fallback(super::not_found)
            .method_not_allowed_fallback(super::method_not_allowed)
            .with_state(Arc::new(view));
        self.serve(app, None)
    }
}

/// `GET /api/v1/gossip`: as on an entry (`docs/admin.md`); 404 with gossip off.
async fn gossip(State(view): State<Arc<NodeView>>) -> Response {
    match &view.gossip {
        Some(gossip) => Json(json!(gossip.view().await)).into_response(),
        None => super::ApiError::not_found("gossip is turned off ([gossip] enabled = false)")
            .into_response(),
    }
}

async fn readyz(State(view): State<Arc<NodeView>>) -> Response {
    let status = *view.status.borrow();
    let reasons = view.not_ready(&status);
    let code = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let (sync_linked, syncs) = view.linked(Role::Sync);
    let (ndb_linked, ndbs) = view.linked(Role::Ndb);
    let mut body = json!({
        "status": if reasons.is_empty() { "ready" } else { "not ready" },
        "checks": {
            "role": view.role.name(),
            "sync_linked": sync_linked, "sync_others": syncs,
            "ndb_linked": ndb_linked, "ndb_others": ndbs,
            "leader": status.leader_id.map(|n| n.0),
        },
    });
    if !reasons.is_empty() {
        body["reasons"] = json!(reasons);
    }
    (code, Json(body)).into_response()
}

async fn status(State(view): State<Arc<NodeView>>) -> Json<Value> {
    let status = *view.status.borrow();
    let members: Vec<Value> = view
        .members
        .iter()
        .map(|(id, role)| {
            let link = (*id != view.id && *role != Role::Entry)
                .then(|| view.mesh.link_version(fox_sequencer::NodeId(*id)));
            let linked = link.map(|version| version.is_some());
            json!({ "id": id, "role": role.name(), "linked": linked, "protocol": link.flatten() })
        })
        .collect();
    let mut body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": {
            "min": fox_sequencer::wire::PROTOCOL_VERSION_MIN,
            "max": fox_sequencer::wire::PROTOCOL_VERSION,
        },
        "node": view.id,
        "role": view.role.name(),
        "uptime_seconds": crate::engine::unix_ms().saturating_sub(view.started_ms) / 1000,
        "members": members,
        "store": { "writes": status.store_writes, "fsyncs": status.store_fsyncs },
        "messages_handled": status.messages_handled,
    });
    body[view.role.name()] = match view.role {
        Role::Ndb => json!({
            "applied_index": status.applied_index,
            "log_records": status.log_records,
            "log_cached": {
                "records": status.log_cached_records,
                "bytes": status.log_cached_bytes,
            },
            "temp_segments": status.temp_segments,
            "catch_up": {
                "active": status.catching_up,
                "peer": status.catch_up_peer.map(|n| n.0),
                "bytes_total": status.catch_up_bytes_total,
                "bytes_done": status.catch_up_bytes_done,
                "checkpoints_pulled": status.catch_ups,
            },
        }),
        _ => json!({
            "leader": status.leader,
            "leader_id": status.leader_id.map(|n| n.0),
            "term": status.term,
            "commit_index": status.commit_index,
            "resolutions": status.resolutions,
            "resolutions_cached": status.resolutions_cached,
            "snapshot_index": status.snapshot_index,
            "started_from_snapshot": status.started_from_snapshot,
            "filling_to": status.filling_to,
        }),
    };
    Json(body)
}

async fn metrics(State(view): State<Arc<NodeView>>) -> Response {
    match super::prometheus::render_node(&view) {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(super::prometheus::CONTENT_TYPE),
            );
            response
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        )
            .into_response(),
    }
}

/// The node's peers with their link state: (peer ID, role, linked).
pub(super) fn peer_links(view: &NodeView) -> Vec<(u32, Role, bool)> {
    view.members
        .iter()
        .filter(|(id, role)| *id != view.id && *role != Role::Entry)
        .map(|(id, role)| (*id, *role, view.mesh.is_linked(fox_sequencer::NodeId(*id))))
        .collect()
}
