//! `GET /metrics`: the router's counters ([`crate::metrics`]), the MQTT counters of every
//! realm, and what the router holds now, in the Prometheus text format (OpenMetrics
//! 1.0, `prometheus-client`'s encoder). Names are `foxrouter_*`; counters end in `_total`.
//! No label carries a topic, realm, session or client: the series stay few.
//!
//! Read on each scrape; nothing here runs on the message path.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::api::{Counts, Traffic};
use super::query::Params;
use super::{Admin, ApiError};
use crate::engine::MeshView;
use crate::metrics::{ConnectionKind, Protocol, TrafficTotals};
use crate::router::Router;

/// The content type of the OpenMetrics text format, which Prometheus asks for and reads.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
pub(super) async fn metrics(
    State(admin): State<Arc<Admin>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(query.as_deref(), &[])?;
    let router = admin.router()?.clone();
    let text = render(router, admin.started_ms).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        )
    })?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

/// The whole exposition for `router`.
fn render(router: Arc<Router>, started_ms: u64) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("foxrouter");
    registry.register_collector(Box::new(RouterCollector { router, started_ms }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Reads the router on each scrape.
#[derive(Debug)]
struct RouterCollector {
    router: Arc<Router>,
    started_ms: u64,
}

/// One metric family being written.
struct Family<'e, 'a> {
    encoder: &'e mut DescriptorEncoder<'a>,
}

impl<'a> Family<'_, 'a> {
    /// The node-to-node mesh: `cluster_peer_linked` per peer (`(peer, role, up)`) and the
    /// link counters; the same names on entries and on ndb and sync nodes.
    fn mesh(
        &mut self,
        linked_help: &str,
        links: &[(String, &str, bool)],
        counters: &MeshView,
    ) -> std::fmt::Result {
        let mut linked = self.encoder.encode_descriptor(
            "cluster_peer_linked",
            linked_help,
            None,
            MetricType::Gauge,
        )?;
        for (peer, role, up) in links {
            let labels = [("peer", peer.clone()), ("role", (*role).to_owned())];
            linked
                .encode_family(&labels)?
                .encode_gauge(&u64::from(*up))?;
        }
        let counters = [
            (
                "cluster_links_established",
                "Node-to-node links established (reconnects count again).",
                counters.links_established,
            ),
            (
                "cluster_connections_refused",
                "Node-to-node connections refused (handshake failed, timed out, too many).",
                counters.connections_refused,
            ),
            (
                "cluster_frames_dropped_queue_full",
                "Frames to a peer dropped: its queue was full.",
                counters.frames_dropped_queue_full,
            ),
            (
                "cluster_frames_dropped_no_link",
                "Frames to a peer dropped: no link to it.",
                counters.frames_dropped_no_link,
            ),
            (
                "cluster_frames_dropped_old_peer",
                "Frames to a peer dropped: its protocol version lacks the message (an older node).",
                counters.frames_dropped_old_peer,
            ),
        ];
        for (name, help, value) in counters {
            self.single(MetricType::Counter, name, help, value)?;
        }
        Ok(())
    }

    /// A family of one unlabelled value.
    fn single(&mut self, kind: MetricType, name: &str, help: &str, value: u64) -> std::fmt::Result {
        let mut metric = self.encoder.encode_descriptor(name, help, None, kind)?;
        match kind {
            MetricType::Counter => metric.encode_counter::<NoLabelSet, u64, f64>(&value, None),
            _ => metric.encode_gauge(&value),
        }
    }

    /// A family with one series per label set.
    fn labelled<S: EncodeLabelSet>(
        &mut self,
        kind: MetricType,
        name: &str,
        help: &str,
        series: &[(S, u64)],
    ) -> std::fmt::Result {
        let mut metric = self.encoder.encode_descriptor(name, help, None, kind)?;
        for (labels, value) in series {
            let mut one = metric.encode_family(labels)?;
            match kind {
                MetricType::Counter => one.encode_counter::<NoLabelSet, u64, f64>(value, None)?,
                _ => one.encode_gauge(value)?,
            }
        }
        Ok(())
    }
}

type Labels = [(&'static str, &'static str); 1];
/// A traffic counter family: name, help, and how to read it from the totals.
type TrafficRow = (&'static str, &'static str, fn(&TrafficTotals) -> u64);
type ConnectionLabels = [(&'static str, &'static str); 2];

fn by_protocol(value: impl Fn(Protocol) -> u64) -> Vec<(Labels, u64)> {
    Protocol::ALL
        .iter()
        .map(|p| ([("protocol", p.name())], value(*p)))
        .collect()
}

fn by_connection(value: impl Fn(ConnectionKind) -> u64) -> Vec<(ConnectionLabels, u64)> {
    ConnectionKind::ALL
        .iter()
        .map(|k| {
            let labels = [
                ("protocol", k.protocol().name()),
                ("transport", k.transport()),
            ];
            (labels, value(*k))
        })
        .collect()
}

impl Collector for RouterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let mut family = Family {
            encoder: &mut encoder,
        };
        self.encode_process(&mut family)?;
        self.encode_connections(&mut family)?;
        self.encode_traffic(&mut family)?;
        self.encode_state(&mut family)?;
        self.encode_store(&mut family)?;
        self.encode_cluster(&mut family)
    }
}

impl RouterCollector {
    fn encode_process(&self, family: &mut Family) -> std::fmt::Result {
        let mut info = family.encoder.encode_descriptor(
            "build_info",
            "The running foxrouter's version (the value is always 1).",
            None,
            MetricType::Gauge,
        )?;
        info.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?
            .encode_gauge(&1u64)?;
        let uptime_seconds = crate::engine::unix_ms().saturating_sub(self.started_ms) / 1000;
        family.single(
            MetricType::Gauge,
            "uptime_seconds",
            "Seconds since the router started.",
            uptime_seconds,
        )
    }

    fn encode_connections(&self, family: &mut Family) -> std::fmt::Result {
        let metrics = self.router.metrics();
        family.labelled(
            MetricType::Gauge,
            "connections_open",
            "Client connections open now.",
            &by_connection(|k| metrics.connections_open(k)),
        )?;
        family.labelled(
            MetricType::Counter,
            "connections",
            "Client connections accepted (past the WebSocket upgrade or RawSocket handshake for WAMP).",
            &by_connection(|k| metrics.connections_opened_total(k)),
        )?;
        family.labelled(
            MetricType::Counter,
            "auth_failures",
            "Refused logins: WAMP HELLO or AUTHENTICATE, MQTT CONNECT credentials.",
            &by_protocol(|p| metrics.auth_failures(p)),
        )
    }

    /// Messages, bytes and publications in and out, by protocol.
    // Long, as a table is: one metric family after another (name, help, value).
    fn encode_traffic(&self, family: &mut Family) -> std::fmt::Result {
        let traffic = Traffic::of(&self.router);
        let rows: [TrafficRow; 6] = [
            (
                "messages_received",
                "Messages from clients: WAMP messages, MQTT packets.",
                |t| t.received.messages,
            ),
            (
                "messages_sent",
                "Messages to clients: WAMP messages, MQTT packets.",
                |t| t.sent.messages,
            ),
            (
                "bytes_received",
                "Bytes of the messages from clients (without WebSocket or RawSocket framing).",
                |t| t.received.bytes,
            ),
            (
                "bytes_sent",
                "Bytes of the messages to clients (without WebSocket or RawSocket framing).",
                |t| t.sent.bytes,
            ),
            (
                "publications_received",
                "Publications from clients: WAMP PUBLISH, MQTT PUBLISH.",
                |t| t.received.publications,
            ),
            (
                "publications_sent",
                "Publications delivered to clients: WAMP EVENT, MQTT PUBLISH.",
                |t| t.sent.publications,
            ),
        ];
        for (name, help, value) in rows {
            family.labelled(
                MetricType::Counter,
                name,
                help,
                &by_protocol(|p| value(traffic.of_protocol(p))),
            )?;
        }
        let events = self.router.metrics().events();
        family.single(
            MetricType::Counter,
            "calls",
            "WAMP CALLs received.",
            events.calls,
        )?;
        family.single(
            MetricType::Counter,
            "call_errors",
            "WAMP ERRORs answering a CALL (refused, no callee, callee error, timeout, canceled).",
            events.call_errors,
        )?;
        family.single(
            MetricType::Counter,
            "queue_dropped",
            "Events dropped because a session's outbound queue was full (slow consumer).",
            events.queue_dropped,
        )?;
        family.single(
            MetricType::Counter,
            "mqtt_dropped",
            "MQTT messages not delivered: too large for the client, or its pending queue full.",
            traffic.mqtt_dropped,
        )?;
        family.single(
            MetricType::Counter,
            "backpressure_pauses",
            "Times a publisher's reads were paused until a subscriber's queue drained.",
            events.backpressure_pauses,
        )?;
        let metrics = self.router.metrics();
        let moves: Vec<_> = crate::metrics::SessionMove::ALL
            .iter()
            .map(|step| ([("kind", step.name())], metrics.session_moves(*step)))
            .collect();
        family.labelled(
            MetricType::Counter,
            "mqtt_session_moves",
            "Steps of MQTT sessions moving between cluster entries, on this entry: claimed (a \
             connection here asked for a session the log knew), resumed (such a claim resumed \
             it), handed_over (a session here went to another entry), adopted (the session of \
             an entry that is gone was taken up here).",
            &moves,
        )
    }

    /// What the router holds now.
    fn encode_state(&self, family: &mut Family) -> std::fmt::Result {
        let counts = Counts::of(&self.router);
        family.labelled(
            MetricType::Gauge,
            "sessions",
            "Sessions a connection serves now.",
            &by_protocol(|p| counts.sessions[p as usize] as u64),
        )?;
        let gauges = [
            (
                "mqtt_sessions_parked",
                "Persistent MQTT sessions kept while their client is away.",
                counts.mqtt_parked,
            ),
            ("realms", "Realms.", counts.realms),
            (
                "subscriptions",
                "Subscriptions (one per realm and pattern, shared by its subscribers).",
                counts.subscriptions,
            ),
            (
                "registrations",
                "Registrations (one per realm and procedure pattern).",
                counts.registrations,
            ),
            (
                "retained_keys",
                "Topics with a retained message.",
                counts.retained,
            ),
            (
                "history_messages",
                "Messages in the in-memory event history of all realms.",
                counts.history,
            ),
        ];
        for (name, help, value) in gauges {
            family.single(MetricType::Gauge, name, help, value as u64)?;
        }
        Ok(())
    }

    /// With `--data`: the group committer's writes and their latency.
    fn encode_store(&self, family: &mut Family) -> std::fmt::Result {
        let Some(durable) = self.router.shared().durable() else {
            return Ok(());
        };
        let stats = durable.commit_stats();
        family.single(
            MetricType::Counter,
            "store_commits",
            "Group commits to the store: one write and one fsync each.",
            stats.groups,
        )?;
        family.single(
            MetricType::Counter,
            "store_batches",
            "Batches of writes committed (publications, retained keys, sessions, wills).",
            stats.batches,
        )?;
        family.single(
            MetricType::Counter,
            "store_batches_failed",
            "Batches the store refused.",
            stats.batches_failed,
        )?;
        histogram(
            family,
            "store_commit_duration_seconds",
            "Time of one group commit: the RocksDB write and its fsync (no fsync with --no-fsync).",
            &stats.write_latency,
        )
    }

    /// On a cluster entry: its links, acknowledgements and their latency.
    // Long, as a table is: one metric family after another (name, help, value).
    fn encode_cluster(&self, family: &mut Family) -> std::fmt::Result {
        let Some(view) = self.router.shared().engine.cluster() else {
            return Ok(());
        };
        let counters = [
            (
                "cluster_acks",
                "Publishes the cluster gave a permanent ID (acknowledged).",
                view.acks,
            ),
            (
                "cluster_ack_errors",
                "Publishes the cluster could not order (refused, never falsely acknowledged).",
                view.ack_errors,
            ),
        ];
        for (name, help, value) in counters {
            family.single(MetricType::Counter, name, help, value)?;
        }
        family.single(
            MetricType::Gauge,
            "cluster_last_applied_id",
            "The last permanent ID this entry applied (delivered to its subscribers).",
            view.last_applied,
        )?;
        let links: Vec<(String, &str, bool)> = view
            .members
            .iter()
            .filter_map(|m| Some((m.id.to_string(), m.role, m.linked?)))
            .collect();
        family.mesh(
            "1 when this entry has a link to the node, else 0 (ndb and sync nodes).",
            &links,
            &view.mesh,
        )?;
        let mut lag = family.encoder.encode_descriptor(
            "cluster_member_lag",
            "How far an ndb or sync node is behind its tier, by its last report: resolutions \
             (ndb) or Raft entries (sync).",
            None,
            MetricType::Gauge,
        )?;
        for member in &view.members {
            let Some(status) = member.status else {
                continue;
            };
            let labels = [
                ("peer", member.id.to_string()),
                ("role", member.role.to_owned()),
            ];
            lag.encode_family(&labels)?.encode_gauge(&status.lag())?;
        }
        family.single(
            MetricType::Gauge,
            "cluster_raft_term",
            "The sync tier's Raft term, as its nodes report it (0: unknown).",
            view.term,
        )?;
        if let Some(leader) = view.leader {
            family.single(
                MetricType::Gauge,
                "cluster_sync_leader",
                "The node ID of the sync tier's leader, as its nodes report it (absent: unknown).",
                u64::from(leader),
            )?;
        }
        family.single(
            MetricType::Gauge,
            "cluster_log_end_id",
            "The highest last permanent ID an ndb node reported.",
            view.log_end,
        )?;
        if let Some(snapshot) = view.snapshot {
            let gauges = [
                (
                    "cluster_snapshot_at_id",
                    "The record of the log this entry's last snapshot stands at.",
                    snapshot.at,
                ),
                (
                    "cluster_snapshot_bytes",
                    "The size of this entry's last snapshot.",
                    snapshot.bytes,
                ),
                (
                    "cluster_snapshot_written_unix_ms",
                    "When this entry's last snapshot was written.",
                    snapshot.written_ms,
                ),
            ];
            for (name, help, value) in gauges {
                family.single(MetricType::Gauge, name, help, value)?;
            }
            family.single(
                MetricType::Counter,
                "cluster_snapshot_writes",
                "Snapshots of its derived state this entry wrote.",
                snapshot.writes,
            )?;
            family.single(
                MetricType::Counter,
                "cluster_snapshot_failures",
                "Snapshots this entry could not write.",
                snapshot.failures,
            )?;
        }
        histogram(
            family,
            "cluster_ack_duration_seconds",
            "Time from a publish on this entry to its permanent ID.",
            &view.ack_latency,
        )
    }
}

/// A latency histogram in seconds (the store's fixed buckets).
fn histogram(
    family: &mut Family,
    name: &str,
    help: &str,
    latency: &fox_storage::LatencyHistogram,
) -> std::fmt::Result {
    let mut buckets: Vec<(f64, u64)> = fox_storage::WRITE_LATENCY_BUCKETS_US
        .iter()
        .zip(latency.counts)
        .map(|(bound_us, count)| (*bound_us as f64 / 1e6, count))
        .collect();
    buckets.push((
        f64::MAX,
        latency.counts[fox_storage::WRITE_LATENCY_BUCKETS_US.len()],
    ));
    let mut histogram =
        family
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
    histogram.encode_histogram::<NoLabelSet>(
        latency.sum_us as f64 / 1e6,
        latency.count(),
        &buckets,
        None,
    )
}

mod node;

pub(super) use node::render_node;

#[cfg(test)]
mod tests;
