//! The `foxrouter` binary.

#![allow(clippy::disallowed_methods)] // the edge: see router/clippy.toml

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;

use fox_router::admin::{self, Admin, AdminServer};
use fox_router::config::{env_overrides, Config};
use fox_router::durable::Durable;
use fox_router::realm::{MessageProperties, Publication};
use fox_router::router::Router;
use fox_router::server::{self, Gate, Listener};
use fox_router::tls::Tls;
use fox_storage::SyncMode;

mod cli;
mod node;

use cli::{
    CheckArgs, Cli, ClusterCommand, ClusterInitArgs, Command, CtlArgs, CtlRequest, ServeArgs,
};
use node::node;

/// Loads the certificates of `[tls]`, if any.
fn load_tls(config: &Config) -> anyhow::Result<Option<Arc<Tls>>> {
    let Some(settings) = &config.tls else {
        return Ok(None);
    };
    let tls = Tls::load(settings).context("cannot load the TLS certificate")?;
    Ok(Some(tls))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Cluster(ClusterCommand::Init(args)) => cluster_init(args),
        Command::Node(args) => node(args),
        Command::Check(args) => check(args),
        Command::Ctl(args) => ctl(args),
        Command::Version => {
            print!("{}", fox_router::version_report());
            Ok(())
        }
    }
}

/// `foxrouter ctl`: one request to the admin listener; exit 1 with the reason on failure.
fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    let request = match args.request {
        CtlRequest::Status => fox_router::ctl::Request::Status,
        CtlRequest::Sessions => fox_router::ctl::Request::Sessions,
        CtlRequest::Kick { id } => fox_router::ctl::Request::Kick(id),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(fox_router::ctl::run(
        &args.admin,
        args.token.as_deref(),
        request,
    )) {
        Ok(text) => {
            println!("{text}");
            Ok(())
        }
        Err(why) => {
            eprintln!("foxrouter ctl: {why}");
            std::process::exit(1);
        }
    }
}

/// `foxrouter check`: the file parsed and validated as `serve` would (TLS files are read by
/// `serve` itself, not here).
fn check(args: CheckArgs) -> anyhow::Result<()> {
    match Config::load(&args.config) {
        Ok(_) => {
            println!("ok: {}", args.config.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn cluster_init(args: ClusterInitArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("foxrouter"));
    let options = fox_cluster::InitOptions {
        entries: args.entries,
        ndb: args.ndb,
        sync: args.sync,
        host: args.host,
        base_port: args.base_port,
        binary,
        ..fox_cluster::InitOptions::default()
    };
    let report = fox_cluster::init(&args.dir, &options)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    println!("wrote {}", report.cluster_file.display());
    println!("wrote {}", report.supervisord_file.display());
    Ok(())
}

/// The router's runtime: `workers` threads (0: one per CPU core).
fn router_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        runtime.worker_threads(workers);
    }
    runtime.enable_all().build()
}

/// The admin listener (when configured) with what it serves, started before the store
/// opens: `/healthz` answers from now on, `/readyz` once the router runs.
struct AdminRunning {
    admin: Arc<Admin>,
    server: AdminServer,
}

/// Binds and starts the admin listener of `config`, if any (HTTPS with `[tls] admin`).
async fn start_admin(
    config: &Config,
    tls: Option<&Arc<Tls>>,
) -> anyhow::Result<Option<AdminRunning>> {
    let Some(mut listener) = admin::bind(&config.admin).await? else {
        return Ok(None);
    };
    if let Some(tls) = tls.filter(|tls| tls.settings().admin) {
        listener = listener.with_tls(tls.clone());
    }
    let admin = Admin::new(config.admin.token.as_deref());
    let server = listener.spawn(admin.clone());
    Ok(Some(AdminRunning { admin, server }))
}

/// Serves the listeners until SIGINT / SIGTERM, then closes every session. SIGHUP reloads
/// the TLS certificates.
async fn serve_until_signal(
    router: Arc<Router>,
    listeners: Vec<Listener>,
    admin: Option<AdminRunning>,
    reloadable: Reloadable,
) {
    // The handlers are in place before the LISTEN lines go out: a SIGTERM sent as soon as
    // a script has read them stops the router cleanly instead of killing it.
    let signal = Signals::install();
    let reloads = tokio::spawn(reload_on_hangup(
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        reloadable,
        router.clone(),
    ));
    let signals = {
        let router = router.clone();
        tokio::spawn(async move {
            signal.wait().await;
            tracing::info!("shutting down");
            router.shared().engine.leave().await;
            router.shut_down();
        })
    };
    let bound: Vec<(&'static str, std::net::SocketAddr)> = listeners
        .iter()
        .filter_map(|l| Some((l.name(), l.local_addr().ok()?)))
        .collect();
    server::announce(&listeners);
    if let Some(running) = &admin {
        running.admin.serve_router(router.clone(), bound);
        running.server.announce();
    }
    server::run(router, listeners).await;
    signals.abort();
    reloads.abort();
    if let Some(running) = admin {
        running.server.stop().await;
    }
}

/// What SIGHUP reloads: the TLS certificates, and the users of the configuration file.
struct Reloadable {
    tls: Option<Arc<Tls>>,
    config: Option<PathBuf>,
}

/// Reads the TLS certificates and the configuration file's users again on every SIGHUP; a
/// bad file leaves the old ones (each part on its own).
async fn reload_on_hangup(
    hangup: Option<tokio::signal::unix::Signal>,
    reloadable: Reloadable,
    router: Arc<Router>,
) {
    let Some(mut hangup) = hangup else {
        return;
    };
    while hangup.recv().await.is_some() {
        match &reloadable.tls {
            None => tracing::info!("SIGHUP: no TLS certificate to reload"),
            Some(tls) => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                Err(e) => {
                    tracing::warn!(error = %e, "SIGHUP: TLS certificates not reloaded; the old ones stay")
                }
            },
        }
        let Some(path) = &reloadable.config else {
            continue;
        };
        let reloaded = Config::load(path)
            .map_err(|e| e.to_string())
            .and_then(|fresh| router.authenticator.reload_users(&fresh));
        match reloaded {
            Ok(users) => tracing::info!(users, "SIGHUP: users reloaded"),
            Err(e) => tracing::warn!(error = %e, "SIGHUP: users not reloaded; the old ones stay"),
        }
    }
}

/// Binds the configured client listeners (WebSocket, RawSocket, MQTT, and those over TLS).
async fn bind_listeners(config: &Config, tls: Option<&Arc<Tls>>) -> anyhow::Result<Vec<Listener>> {
    let gates = [
        (Gate::WebSocket, config.listen.ws),
        (Gate::RawSocket, config.listen.rawsocket),
        (Gate::Mqtt, config.listen.mqtt),
    ];
    let mut listeners = Vec::new();
    for (gate, addr) in gates {
        if let Some(addr) = addr {
            listeners.push(Listener::bind(gate, addr).await?);
        }
    }
    if let Some(tls) = tls {
        let settings = tls.settings();
        let gates = [
            (Gate::WebSocket, settings.ws),
            (Gate::RawSocket, settings.rawsocket),
            (Gate::Mqtt, settings.mqtt),
        ];
        for (gate, addr) in gates {
            if let Some(addr) = addr {
                listeners.push(Listener::bind_tls(gate, addr, tls.clone()).await?);
            }
        }
    }
    Ok(listeners)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.logging.init();
    let config_path = args.config.clone();
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::from_sources(None, &env_overrides(std::env::vars()))?,
    };
    if args.ws.is_some() {
        config.listen.ws = args.ws;
    }
    if args.rawsocket.is_some() {
        config.listen.rawsocket = args.rawsocket;
    }
    if args.mqtt.is_some() {
        config.listen.mqtt = args.mqtt;
    }
    if let Some(workers) = args.workers {
        config.router.workers = workers;
    }
    if let Some(listen) = args.admin {
        config.admin.listen = listen;
    }
    config.admin.validate().map_err(anyhow::Error::msg)?;
    args.tls.apply(&mut config)?;
    let tls = load_tls(&config)?;
    let sync = if args.no_fsync {
        SyncMode::None
    } else {
        SyncMode::Fsync
    };
    let runtime = router_runtime(config.router.workers)?;
    runtime
        .block_on(async move {
            let admin = start_admin(&config, tls.as_ref()).await?;
            let durable = match args.data {
                Some(dir) => Some(open_store(dir, sync).await?),
                None => None,
            };
            let listeners = bind_listeners(&config, tls.as_ref()).await?;
            // Restoring a large store takes a while: off the runtime's workers, so the
            // admin listener keeps answering meanwhile.
            let store = durable.clone();
            let router = tokio::task::block_in_place(|| start_router(config, durable))?;
            let reloadable = Reloadable {
                tls,
                config: config_path,
            };
            serve_until_signal(router, listeners, admin, reloadable).await;
            if let Some(store) = store {
                // What the closing sessions wrote (their wills, say) is durable before exit.
                if let Err(error) = tokio::task::block_in_place(|| store.flush_blocking()) {
                    tracing::error!(%error, "the last writes may not be durable");
                }
            }
            anyhow::Ok(())
        })
        .context("router failed")?;
    Ok(())
}

/// Opens the store in `dir` (on a blocking thread: RocksDB's open may take a while).
async fn open_store(dir: PathBuf, sync: SyncMode) -> anyhow::Result<Arc<Durable>> {
    let opened = tokio::task::spawn_blocking(move || {
        Durable::open(&dir, sync)
            .with_context(|| format!("cannot open the store in {}", dir.display()))
    })
    .await
    .context("the store's opening task failed")?;
    Ok(Arc::new(opened?))
}

/// Builds the router; with a store, resumes IDs after the last stored one and reloads the
/// retained messages.
fn start_router(config: Config, durable: Option<Arc<Durable>>) -> anyhow::Result<Arc<Router>> {
    let Some(durable) = durable else {
        return Ok(Router::new(config));
    };
    let last_id = durable.last_id()?;
    let restored = durable.retained()?;
    let router = Router::with_store(config, last_id, Some(durable));
    let count = restored.len();
    for r in restored {
        let Some(realm) = router.realm(&r.realm) else {
            tracing::warn!(realm = %r.realm, "retained message of a realm that is not configured");
            continue;
        };
        realm.memory().restore_retained(Publication {
            id: r.id,
            topic: r.topic,
            payload: r.payload,
            publisher: 0,
            disclosed: None,
            qos: r.qos,
            retain: true,
            properties: MessageProperties::default(),
        });
    }
    let wills = router
        .shared()
        .durable()
        .map(|d| d.wills())
        .transpose()?
        .unwrap_or_default();
    let will_count = wills.len();
    for (realm, topic, will) in wills {
        // Their sessions died with the previous process: abnormal ends, so the wills apply.
        if let Some(realm) = router.realm(&realm) {
            realm.apply_orphan_will(&topic, will);
        }
    }
    let mqtt_sessions = fox_router::mqtt::restore(&router)?;
    tracing::info!(
        last_id,
        retained = count,
        wills = will_count,
        mqtt_sessions,
        "store opened"
    );
    spawn_compaction(&router);
    Ok(router)
}

/// Runs history retention every `history_compaction_interval_ms` (with a store).
fn spawn_compaction(router: &Arc<Router>) {
    let limits = &router.config.limits;
    let policy = fox_storage::RetentionPolicy {
        max_count: limits.history_retention_count,
        max_age_ms: limits.history_retention_age_ms,
        max_bytes: limits.history_retention_bytes,
    };
    if policy == fox_storage::RetentionPolicy::default() {
        return;
    }
    let Some(durable) = router.shared().durable().cloned() else {
        return;
    };
    let interval = std::time::Duration::from_millis(limits.history_compaction_interval_ms.max(100));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let durable = durable.clone();
            let removed = tokio::task::spawn_blocking(move || {
                durable.compact(&policy, fox_router::engine::unix_ms())
            })
            .await
            .unwrap_or(0);
            if removed > 0 {
                tracing::info!(removed, "history compacted");
            }
        }
    });
}

/// SIGTERM and SIGINT, registered at once (a signal that arrives before anyone waits is
/// kept, not lost to the default action).
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn wait(mut self) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => {}
            _ = next(&mut self.int) => {}
        }
    }
}
