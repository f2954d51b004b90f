//! The `foxrouter` binary.

#![allow(clippy::disallowed_methods)] // the edge: see router/clippy.toml

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use fox_router::admin::{self, Admin, AdminServer};
use fox_router::config::{env_overrides, AdminListen, Config};
use fox_router::durable::Durable;
use fox_router::realm::{MessageProperties, Publication};
use fox_router::router::Router;
use fox_router::server::{self, Gate, Listener};
use fox_router::tls::{Tls, TlsSettings};
use fox_storage::SyncMode;

/// foxrouter: WAMP v2 + MQTT router with permanent, monotonic message IDs.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a single-node router (embedded in-memory store unless --data is given).
    Serve(Box<ServeArgs>),
    /// Masterfree cluster tools.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run one node of a masterfree cluster (its role is read from the cluster file).
    Node(NodeArgs),
    /// Validate a configuration file (with the environment's FOXROUTER_<SECTION>__<KEY>
    /// overrides): prints `ok`, or the line and the reason and exits 1.
    Check(CheckArgs),
    /// Print the version of foxrouter and of each of its components.
    Version,
    /// Ask a running router's admin listener: status, sessions, kick a session.
    Ctl(CtlArgs),
}

#[derive(Parser, Debug)]
struct CtlArgs {
    /// The admin listener.
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    admin: String,
    /// Its bearer token (`[admin] token`), when it needs one.
    #[arg(long, env = "FOXROUTER_CTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    request: CtlRequest,
}

#[derive(Subcommand, Debug)]
enum CtlRequest {
    /// Version, uptime, listeners and counts (JSON).
    Status,
    /// Every session, one line each.
    Sessions,
    /// Close a session (WAMP GOODBYE wamp.close.killed, MQTT 5 DISCONNECT 0x98).
    Kick {
        /// The session ID.
        id: u64,
    },
}

#[derive(Parser, Debug)]
struct CheckArgs {
    /// The configuration file.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Write DIR/cluster.toml (fresh secret) and DIR/supervisord.ini for a new cluster.
    Init(ClusterInitArgs),
}

#[derive(Parser, Debug)]
struct ClusterInitArgs {
    /// Directory to write into (created if missing).
    dir: PathBuf,
    /// Entry routers.
    #[arg(long, default_value_t = 3)]
    entries: u32,
    /// ndb storage nodes (odd recommended).
    #[arg(long, default_value_t = 3)]
    ndb: u32,
    /// sync voters (odd recommended).
    #[arg(long, default_value_t = 3)]
    sync: u32,
    /// Address every node binds.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// First port; ports are handed out upwards from it.
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
}

#[derive(Parser, Debug)]
struct NodeArgs {
    /// The cluster file (`foxrouter cluster init` writes one).
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
    /// This node's ID in the cluster file.
    #[arg(long, value_name = "ID")]
    id: u32,
    /// Do not wait for fsync before STORED and Raft votes (benchmarks only).
    #[arg(long)]
    no_fsync: bool,
    /// Entry nodes: router settings (limits, realms, roles, users), the same TOML file as
    /// `serve --config`; listeners come from the cluster file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Runtime worker threads (0: one per CPU core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    #[command(flatten)]
    logging: Logging,
}

#[derive(Parser, Debug)]
struct ServeArgs {
    /// WebSocket listen address: WAMP at /ws, MQTT at /mqtt. [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    ws: Option<SocketAddr>,
    /// WAMP RawSocket listen address. [default: 127.0.0.1:8081]
    #[arg(long, value_name = "ADDR")]
    rawsocket: Option<SocketAddr>,
    /// MQTT (TCP) listen address. [default: 127.0.0.1:1883]
    #[arg(long, value_name = "ADDR")]
    mqtt: Option<SocketAddr>,
    /// Directory for durable storage (RocksDB). Without it everything is kept in memory.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// TOML configuration file (listeners, limits, realms, roles, users); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// With --data: do not wait for fsync before acknowledging (benchmarks only: a power
    /// loss can then lose acknowledged messages; a crash of the process cannot).
    #[arg(long)]
    no_fsync: bool,
    /// Runtime worker threads (0: one per CPU core, the default). Where clients share the
    /// machine's few cores with the router (a load generator on 2 cores), fewer workers
    /// mean fewer thread wake-ups per message.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Admin HTTP listener (metrics, health, JSON status; docs/admin.md), or `off`. On an
    /// address other than loopback it requires `[admin] token` in the config file.
    /// [default: 127.0.0.1:8090; if that is taken, the router warns and runs without]
    #[arg(long, value_name = "ADDR|off")]
    admin: Option<AdminListen>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    logging: Logging,
}

/// TLS options (`[tls]` in the config file; docs/tls.md).
#[derive(Parser, Debug)]
struct TlsArgs {
    /// PEM certificate chain for the TLS listeners (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// MQTT over TLS listen address. [default with TLS: 127.0.0.1:8883]
    #[arg(long, value_name = "ADDR")]
    mqtts: Option<SocketAddr>,
    /// WebSocket over TLS listen address (wss://.../ws, wss://.../mqtt). [default: off]
    #[arg(long, value_name = "ADDR")]
    wss: Option<SocketAddr>,
    /// WAMP RawSocket over TLS listen address. [default: off]
    #[arg(long, value_name = "ADDR")]
    rawsockets: Option<SocketAddr>,
}

impl TlsArgs {
    /// Lays the flags over the file's `[tls]`.
    fn apply(self, config: &mut Config) -> anyhow::Result<()> {
        if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            let tls = config.tls.get_or_insert_with(TlsSettings::default);
            tls.cert = cert;
            tls.key = key;
        }
        let listeners = [self.mqtts, self.wss, self.rawsockets];
        if listeners.iter().any(Option::is_some) {
            let Some(tls) = config.tls.as_mut() else {
                anyhow::bail!("--mqtts, --wss and --rawsockets need a certificate: --tls-cert and --tls-key, or [tls] in the config file");
            };
            tls.mqtt = self.mqtts.or(tls.mqtt);
            tls.ws = self.wss.or(tls.ws);
            tls.rawsocket = self.rawsockets.or(tls.rawsocket);
        }
        if let Some(tls) = &config.tls {
            tls.validate().map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }
}

/// Loads the certificates of `[tls]`, if any.
fn load_tls(config: &Config) -> anyhow::Result<Option<Arc<Tls>>> {
    let Some(settings) = &config.tls else {
        return Ok(None);
    };
    let tls = Tls::load(settings).context("cannot load the TLS certificate")?;
    Ok(Some(tls))
}

/// Logging options, shared by `serve` and `node`.
#[derive(Parser, Debug)]
struct Logging {
    /// Log filter, e.g. `info` or `fox_router=debug` (also RUST_LOG).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log: String,
    /// Log line format: `text`, or `json` (one object per line, for log shippers).
    /// Colours only when stderr is a terminal.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Logging {
    /// Installs the global subscriber: to stderr, with colours only on a terminal.
    fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&self.log));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => {
                let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
                builder.with_ansi(ansi).init();
            }
        }
    }
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

fn node(args: NodeArgs) -> anyhow::Result<()> {
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
fn entry_node(args: NodeArgs, cluster: &fox_cluster::ClusterFile) -> anyhow::Result<()> {
    let spec = cluster
        .node(args.id)
        .context("the entry is not in the cluster file")?
        .clone();
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
            let members = cluster
                .nodes
                .iter()
                .map(|n| fox_router::engine::cluster::Member {
                    id: n.id,
                    role: n.role.name(),
                    peer: n.peer,
                    rank: n.rank.unwrap_or(0),
                    listeners: [n.ws, n.rawsocket, n.mqtt],
                })
                .collect();
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
            let mut gossip_tasks = Vec::new();
            if let Some(gossip) = gossip {
                engine.set_gossip(gossip.clone());
                let counted = Arc::downgrade(&router);
                gossip_tasks.push(gossip.refresh_load(move || {
                    let sessions = counted.upgrade().map_or(0, |r| r.session_count());
                    vec![("load.sessions".into(), sessions.to_string())]
                }));
                gossip_tasks.push(tokio::spawn(fox_router::gossip::events::publish(
                    router.clone(),
                    gossip,
                )));
            }
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
