//! fox-relay: the physical-limit baseline of bench/compare.sh. Accepts fox-bench's MQTT
//! and WAMP connections and copies every publish to the subscribers of exactly its topic,
//! answering the handshakes with fixed replies; no routing state beyond that, no sessions.
//! See `fox_demos::relay` for exactly what it does and does not do.
//!
//! ```text
//! fox-relay --mqtt 127.0.0.1:1883 --rawsocket 127.0.0.1:8081 --ws 127.0.0.1:8080
//! ```

use anyhow::Context;
use clap::Parser;

use fox_demos::relay::{Config, Relay};

#[derive(Parser)]
#[command(
    name = "fox-relay",
    about = "Forwards publishes to exact-topic subscribers (MQTT, WAMP): a benchmark baseline"
)]
struct Cli {
    /// MQTT 3.1.1 / 5.0 listener.
    #[arg(long)]
    mqtt: Option<std::net::SocketAddr>,
    /// WAMP RawSocket listener.
    #[arg(long)]
    rawsocket: Option<std::net::SocketAddr>,
    /// WAMP WebSocket listener.
    #[arg(long)]
    ws: Option<std::net::SocketAddr>,
    /// Runtime worker threads (0: one per CPU the process may run on).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config {
        mqtt: cli.mqtt,
        rawsocket: cli.rawsocket,
        ws: cli.ws,
    };
    anyhow::ensure!(
        config.mqtt.is_some() || config.rawsocket.is_some() || config.ws.is_some(),
        "name at least one of --mqtt, --rawsocket, --ws"
    );
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if cli.workers > 0 {
        runtime.worker_threads(cli.workers);
    }
    let runtime = runtime.enable_all().build().context("tokio runtime")?;
    runtime.block_on(async {
        let relay = Relay::bind(&config).await.context("bind")?;
        for (name, addr) in [
            ("mqtt", relay.mqtt_addr()),
            ("rawsocket", relay.rawsocket_addr()),
            ("ws", relay.ws_addr()),
        ] {
            if let Some(addr) = addr {
                eprintln!("fox-relay: {name} on {addr}");
            }
        }
        relay.run().await.context("accept")
    })
}
