//! `foxrouter node`: one node of a masterfree cluster (ndb, sync, or an entry router).

use std::sync::Arc;

use anyhow::Context;
use fox_router::admin;
use fox_router::config::{env_overrides, AdminListen, Config};
use fox_router::router::Router;

use crate::cli::NodeArgs;
use crate::{
    bind_listeners, load_tls, router_runtime, serve_until_signal, start_admin, Reloadable,
};

pub(crate) fn node(args: NodeArgs) -> anyhow::Result<()> {
    args.logging.init();
    let (cluster, _) = fox_cluster::ClusterFile::load(&args.cluster)?;
    let role = cluster
        .node(args.id)
        .map(|node| node.role)
        .with_context(|| format!("node {} is not in {}", args.id, args.cluster.display()))?;
    if role == fox_cluster::Role::Entry {
        return entry_node(args, &cluster);
    }
    let options = fox_cluster::NodeOptions {
        no_fsync: args.no_fsync,
        announce_listen: true,
        catch_up: fox_cluster::CatchUpOptions {
            checkpoint_after_resolutions: args.catch_up_after,
            bytes_per_s: args.catch_up_rate.saturating_mul(1_000_000),
            ..fox_cluster::CatchUpOptions::default()
        },
        log_cache_bytes: Some(args.log_cache_mb.saturating_mul(1 << 20)),
        resolution_cache: Some(args.resolution_cache),
        ..fox_cluster::NodeOptions::default()
    };
    let runtime = router_runtime(args.workers.unwrap_or(0))?;
    let spec = cluster
        .node(args.id)
        .context("the node is not in the cluster file")?
        .clone();
    let members = cluster.nodes.iter().map(|n| (n.id, n.role)).collect();
    runtime
        .block_on(async move {
            let started_ms = fox_router::engine::unix_ms();
            let node = fox_cluster::start_node(&args.cluster, args.id, options).await?;
            let gossip = fox_router::gossip::Gossip::start(
                &cluster,
                args.id,
                started_ms,
                fox_router::gossip::metadata(&cluster, args.id),
            )
            .await?;
            let load = gossip.as_ref().map(|g| g.refresh_load(Vec::new));
            let admin = match spec.admin {
                None => None,
                Some(address) => {
                    let listener = admin::bind(&fox_router::config::AdminSettings {
                        listen: AdminListen::At(address),
                        ..Default::default()
                    })
                    .await?
                    .context("the admin listener did not bind")?;
                    let server = listener.spawn_node(admin::node::NodeView {
                        id: args.id,
                        role,
                        members,
                        mesh: node.mesh.clone(),
                        status: node.status.clone(),
                        started_ms,
                        gossip: gossip.clone(),
                    });
                    server.announce();
                    Some(server)
                }
            };
            let ended = fox_cluster::run_until_signal(node).await;
            if let Some(load) = load {
                load.abort();
            }
            if let Some(admin) = admin {
                admin.stop().await;
            }
            anyhow::Ok(ended?)
        })
        .with_context(|| format!("node {} failed", args.id))
}

/// Runs an entry: a full router (WAMP and MQTT gates) whose engine is the cluster's.
pub(crate) fn entry_node(args: NodeArgs, cluster: &fox_cluster::ClusterFile) -> anyhow::Result<()> {
    let spec = cluster
        .node(args.id)
        .context("the entry is not in the cluster file")?
        .clone();
    let config = entry_config(&args, &spec)?;
    let tls = load_tls(&config)?;
    let runtime = router_runtime(config.router.workers)?;
    let cluster = cluster.clone();
    runtime
        .block_on(async move {
            let admin = start_admin(&config, tls.as_ref()).await?;
            let listeners = bind_listeners(&config, tls.as_ref()).await?;
            let entry = fox_cluster::EntryHandle::start(
                &cluster,
                args.id,
                fox_cluster::EntryOptions::default(),
            )
            .await
            .with_context(|| format!("entry {} cannot start", args.id))?;
            let members = members(&cluster);
            let engine = Arc::new(fox_router::engine::ClusterEngine::new(
                entry.clone(),
                args.id,
                members,
            ));
            let router = Router::with_engine(config, engine.clone());
            let gossip = fox_router::gossip::Gossip::start(
                &cluster,
                args.id,
                engine.incarnation(),
                fox_router::gossip::metadata(&cluster, args.id),
            )
            .await?;
            let gossip_tasks = match gossip {
                Some(gossip) => entry_gossip(&router, &engine, gossip),
                None => Vec::new(),
            };
            let snapshots = spec.data.clone().map(|dir| {
                let every = router.config.router.snapshot_records;
                let stats = engine.snapshot_stats();
                fox_router::follow::snapshot::Snapshots::new(dir, args.id, every, stats)
            });
            // The snapshot's state is back before any client is served.
            let start = fox_router::follow::restore(&router, &engine, snapshots.as_ref());
            let (stop_follower, stopping) = tokio::sync::watch::channel(false);
            let follower = tokio::spawn(fox_router::follow::follow_log(
                router.clone(),
                engine,
                start,
                snapshots,
                stopping,
            ));
            let reloadable = Reloadable {
                tls,
                config: args.config.clone(),
            };
            serve_until_signal(router, listeners, admin, reloadable).await;
            // The follower writes its last snapshot (bounded: a stop does not hang on it).
            let _ = stop_follower.send(true);
            let follower_abort = follower.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), follower)
                .await
                .is_err()
            {
                follower_abort.abort();
            }
            entry.stop().await;
            gossip_tasks.iter().for_each(tokio::task::JoinHandle::abort);
            anyhow::Ok(())
        })
        .with_context(|| format!("entry {} failed", args.id))
}

/// An entry's configuration: its file (or the defaults), with the listeners the cluster
/// file gives it.
fn entry_config(args: &NodeArgs, spec: &fox_cluster::NodeSpec) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::from_sources(None, &env_overrides(std::env::vars()))?,
    };
    config.listen.ws = spec.ws;
    config.listen.rawsocket = spec.rawsocket;
    config.listen.mqtt = spec.mqtt;
    // Several entries may share a host: the admin listener is where the cluster file
    // puts it, or off; never the default address.
    config.admin.listen = spec.admin.map_or(AdminListen::Off, AdminListen::At);
    config.admin.validate().map_err(anyhow::Error::msg)?;
    if let Some(workers) = args.workers {
        config.router.workers = workers;
    }
    Ok(config)
}

/// The cluster's members as the entry's engine shows them.
fn members(cluster: &fox_cluster::ClusterFile) -> Vec<fox_router::engine::cluster::Member> {
    cluster
        .nodes
        .iter()
        .map(|n| fox_router::engine::cluster::Member {
            id: n.id,
            role: n.role.name(),
            peer: n.peer,
            rank: n.rank.unwrap_or(0),
            listeners: [n.ws, n.rawsocket, n.mqtt],
        })
        .collect()
}

/// Gossip on an entry: its load spread, and gossip events published to its clients.
fn entry_gossip(
    router: &Arc<Router>,
    engine: &Arc<fox_router::engine::ClusterEngine>,
    gossip: Arc<fox_router::gossip::Gossip>,
) -> Vec<tokio::task::JoinHandle<()>> {
    engine.set_gossip(gossip.clone());
    let counted = Arc::downgrade(router);
    let load = gossip.refresh_load(move || {
        let sessions = counted.upgrade().map_or(0, |r| r.session_count());
        vec![("load.sessions".into(), sessions.to_string())]
    });
    let events = tokio::spawn(fox_router::gossip::events::publish(router.clone(), gossip));
    vec![load, events]
}
