//! The command line: subcommands and their flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fox_router::config::{AdminListen, Config};
use fox_router::tls::TlsSettings;

/// foxrouter: WAMP v2 + MQTT router with permanent, monotonic message IDs.
#[derive(Parser, Debug)]
#[command(version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
pub(crate) struct CtlArgs {
    /// The admin listener.
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    pub(crate) admin: String,
    /// Its bearer token (`[admin] token`), when it needs one.
    #[arg(long, env = "FOXROUTER_CTL_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    #[command(subcommand)]
    pub(crate) request: CtlRequest,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CtlRequest {
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
pub(crate) struct CheckArgs {
    /// The configuration file.
    #[arg(long)]
    pub(crate) config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// Write DIR/cluster.toml (fresh secret) and DIR/supervisord.ini for a new cluster.
    Init(ClusterInitArgs),
}

#[derive(Parser, Debug)]
pub(crate) struct ClusterInitArgs {
    /// Directory to write into (created if missing).
    pub(crate) dir: PathBuf,
    /// Entry routers.
    #[arg(long, default_value_t = 3)]
    pub(crate) entries: u32,
    /// ndb storage nodes (odd recommended).
    #[arg(long, default_value_t = 3)]
    pub(crate) ndb: u32,
    /// sync voters (odd recommended).
    #[arg(long, default_value_t = 3)]
    pub(crate) sync: u32,
    /// Address every node binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: std::net::IpAddr,
    /// First port; ports are handed out upwards from it.
    #[arg(long, default_value_t = 7100)]
    pub(crate) base_port: u16,
}

#[derive(Parser, Debug)]
pub(crate) struct NodeArgs {
    /// The cluster file (`foxrouter cluster init` writes one).
    #[arg(long, value_name = "FILE")]
    pub(crate) cluster: PathBuf,
    /// This node's ID in the cluster file.
    #[arg(long, value_name = "ID")]
    pub(crate) id: u32,
    /// Do not wait for fsync before STORED and Raft votes (benchmarks only).
    #[arg(long)]
    pub(crate) no_fsync: bool,
    /// Entry nodes: router settings (limits, realms, roles, users), the same TOML file as
    /// `serve --config`; listeners come from the cluster file.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Runtime worker threads (0: one per CPU core).
    #[arg(long, value_name = "N")]
    pub(crate) workers: Option<usize>,
    /// ndb: at start, pull a peer ndb's checkpoint when it has applied more than this many
    /// resolutions (decided segments) beyond this one (an empty, wiped or long-stopped
    /// ndb); fewer are fetched segment by segment.
    #[arg(long, value_name = "RESOLUTIONS", default_value_t = 5_000)]
    pub(crate) catch_up_after: u64,
    /// ndb: pull a checkpoint at most this fast, in MB/s (0: no bound), so that live
    /// traffic keeps its latency.
    #[arg(long, value_name = "MB_PER_S", default_value_t = 100)]
    pub(crate) catch_up_rate: u64,
    /// ndb: keep the permanent log's newest records in memory, up to this many MB (and a
    /// million records); older ones are read from disk when an entry or a peer asks.
    #[arg(long, value_name = "MB", default_value_t = 256)]
    pub(crate) log_cache_mb: usize,
    /// sync: keep the newest resolutions in memory, up to this many (about 80 bytes
    /// each); older ones are read from disk when an ndb or a sync node far behind asks.
    #[arg(long, value_name = "N", default_value_t = fox_sequencer::config::RESOLUTION_CACHE_MAX_DEFAULT)]
    pub(crate) resolution_cache: usize,
    #[command(flatten)]
    pub(crate) logging: Logging,
}

#[derive(Parser, Debug)]
pub(crate) struct ServeArgs {
    /// WebSocket listen address: WAMP at /ws, MQTT at /mqtt. [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub(crate) ws: Option<SocketAddr>,
    /// WAMP RawSocket listen address. [default: 127.0.0.1:8081]
    #[arg(long, value_name = "ADDR")]
    pub(crate) rawsocket: Option<SocketAddr>,
    /// MQTT (TCP) listen address. [default: 127.0.0.1:1883]
    #[arg(long, value_name = "ADDR")]
    pub(crate) mqtt: Option<SocketAddr>,
    /// Directory for durable storage (RocksDB). Without it everything is kept in memory.
    #[arg(long, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
    /// TOML configuration file (listeners, limits, realms, roles, users); flags override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// With --data: do not wait for fsync before acknowledging (benchmarks only: a power
    /// loss can then lose acknowledged messages; a crash of the process cannot).
    #[arg(long)]
    pub(crate) no_fsync: bool,
    /// Runtime worker threads (0: one per CPU core, the default). Where clients share the
    /// machine's few cores with the router (a load generator on 2 cores), fewer workers
    /// mean fewer thread wake-ups per message.
    #[arg(long, value_name = "N")]
    pub(crate) workers: Option<usize>,
    /// Admin HTTP listener (metrics, health, JSON status; docs/admin.md), or `off`. On an
    /// address other than loopback it requires `[admin] token` in the config file.
    /// [default: 127.0.0.1:8090; if that is taken, the router warns and runs without]
    #[arg(long, value_name = "ADDR|off")]
    pub(crate) admin: Option<AdminListen>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    #[command(flatten)]
    pub(crate) logging: Logging,
}

/// TLS options (`[tls]` in the config file; docs/tls.md).
#[derive(Parser, Debug)]
pub(crate) struct TlsArgs {
    /// PEM certificate chain for the TLS listeners (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// MQTT over TLS listen address. [default with TLS: 127.0.0.1:8883]
    #[arg(long, value_name = "ADDR")]
    pub(crate) mqtts: Option<SocketAddr>,
    /// WebSocket over TLS listen address (wss://.../ws, wss://.../mqtt). [default: off]
    #[arg(long, value_name = "ADDR")]
    pub(crate) wss: Option<SocketAddr>,
    /// WAMP RawSocket over TLS listen address. [default: off]
    #[arg(long, value_name = "ADDR")]
    pub(crate) rawsockets: Option<SocketAddr>,
}

impl TlsArgs {
    /// Lays the flags over the file's `[tls]`.
    pub(crate) fn apply(self, config: &mut Config) -> anyhow::Result<()> {
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

/// Logging options, shared by `serve` and `node`.
#[derive(Parser, Debug)]
pub(crate) struct Logging {
    /// Log filter, e.g. `info` or `fox_router=debug` (also RUST_LOG).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub(crate) log: String,
    /// Log line format: `text`, or `json` (one object per line, for log shippers).
    /// Colours only when stderr is a terminal.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub(crate) log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Logging {
    /// Installs the global subscriber: to stderr, with colours only on a terminal.
    pub(crate) fn init(&self) {
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
