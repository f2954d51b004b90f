//! The exposition of an ndb or sync node: its build, its role, its mesh links and its
//! sequencer's counters (the same names as on entries where they mean the same).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::*;

/// The exposition of an ndb or sync node (`admin/node.rs`).
pub(in crate::admin) fn render_node(
    view: &crate::admin::node::NodeView,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("foxrouter");
    registry.register_collector(Box::new(NodeCollector(view.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Reads an ndb or sync node on each scrape.
#[derive(Debug)]
struct NodeCollector(crate::admin::node::NodeView);

impl Collector for NodeCollector {
    // Long, as a table is: one metric family after another (name, help, value).
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let view = &self.0;
        let status = *view.status.borrow();
        let mut family = Family {
            encoder: &mut encoder,
        };
        let mut info = family.encoder.encode_descriptor(
            "build_info",
            "The running foxrouter's version and this node's role (the value is always 1).",
            None,
            MetricType::Gauge,
        )?;
        info.encode_family(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("role", view.role.name()),
        ])?
        .encode_gauge(&1u64)?;
        family.single(
            MetricType::Gauge,
            "uptime_seconds",
            "Seconds since the node started.",
            crate::engine::unix_ms().saturating_sub(view.started_ms) / 1000,
        )?;
        let counters = [
            (
                "node_store_writes",
                "Store writes (group commits) of this node.",
                status.store_writes,
            ),
            (
                "node_store_fsyncs",
                "Store writes with an fsync (STORED and Raft votes wait for one).",
                status.store_fsyncs,
            ),
            (
                "node_messages_handled",
                "Messages from peers handled.",
                status.messages_handled,
            ),
        ];
        for (name, help, value) in counters {
            family.single(MetricType::Counter, name, help, value)?;
        }
        let gauges: Vec<(&str, &str, u64)> = match view.role {
            fox_cluster::Role::Ndb => vec![
                (
                    "ndb_applied_index",
                    "The last resolution applied to the permanent log.",
                    status.applied_index,
                ),
                (
                    "ndb_log_records",
                    "Records in the permanent log.",
                    status.log_records,
                ),
                (
                    "ndb_log_cached_records",
                    "Of them, the newest, which memory holds (--log-cache-mb).",
                    status.log_cached_records,
                ),
                (
                    "ndb_log_cached_bytes",
                    "Their encoded bytes.",
                    status.log_cached_bytes,
                ),
                (
                    "ndb_temp_segments",
                    "Temporary segments held, not yet resolved.",
                    status.temp_segments,
                ),
                (
                    "ndb_catching_up",
                    "1 while the ndb pulls a peer's checkpoint at start.",
                    u64::from(status.catching_up),
                ),
                (
                    "ndb_catch_up_bytes_total",
                    "Bytes of the checkpoint pulled (being pulled) at start.",
                    status.catch_up_bytes_total,
                ),
                (
                    "ndb_catch_up_bytes_done",
                    "Of them, staged so far.",
                    status.catch_up_bytes_done,
                ),
            ],
            _ => vec![
                (
                    "raft_term",
                    "The sync tier's Raft term as this node knows it.",
                    status.term,
                ),
                (
                    "raft_leader",
                    "1 while this node leads the vote.",
                    u64::from(status.leader),
                ),
                (
                    "raft_leader_id",
                    "The leader this node knows of (0: none).",
                    status.leader_id.map_or(0, |n| u64::from(n.0)),
                ),
                (
                    "raft_commit_index",
                    "The highest Raft index known committed.",
                    status.commit_index,
                ),
                (
                    "sync_resolutions",
                    "Segments resolved (ordered or aborted) so far.",
                    status.resolutions,
                ),
                (
                    "sync_resolutions_cached",
                    "Of their resolutions, the newest, which memory holds (--resolution-cache).",
                    status.resolutions_cached,
                ),
                (
                    "raft_snapshot_index",
                    "The Raft index of the latest snapshot; the log is compacted up to it.",
                    status.snapshot_index,
                ),
            ],
        };
        for (name, help, value) in gauges {
            family.single(MetricType::Gauge, name, help, value)?;
        }
        let links: Vec<(String, &str, bool)> = crate::admin::node::peer_links(view)
            .into_iter()
            .map(|(peer, role, up)| (peer.to_string(), role.name(), up))
            .collect();
        let mesh = view.mesh.stats();
        family.mesh(
            "1 while this node has a link to the peer (ndb and sync nodes).",
            &links,
            &MeshView {
                links_established: mesh.links_established,
                connections_refused: mesh.connections_refused,
                frames_dropped_queue_full: mesh.frames_dropped_queue_full,
                frames_dropped_no_link: mesh.frames_dropped_no_link,
                frames_dropped_old_peer: mesh.frames_dropped_old_peer,
            },
        )
    }
}
