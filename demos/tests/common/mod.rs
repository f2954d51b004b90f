//! Test helpers: a foxrouter process or a mosquitto process on free loopback ports,
//! killed when the guard drops (also when a test fails).

#![allow(dead_code)] // Each test file uses a subset.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child process gets to report its listening addresses.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running router; killed on drop.
pub struct Router {
    child: Child,
    /// WebSocket address (WAMP at /ws).
    pub ws: SocketAddr,
    /// RawSocket address.
    pub rawsocket: SocketAddr,
    /// MQTT address.
    pub mqtt: SocketAddr,
    _dir: Option<TempDir>,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The foxrouter binary: $FOXROUTER_BIN, else next to this test's own build
/// (`<target>/debug/deps/<test>` -> `<target>/debug/foxrouter`, whatever the target dir).
pub fn foxrouter_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FOXROUTER_BIN") {
        return PathBuf::from(path);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("foxrouter")));
    let path = beside.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/foxrouter")
    });
    assert!(
        path.exists(),
        "foxrouter binary not found at {}: run `cargo build -p fox-router` first or set FOXROUTER_BIN",
        path.display()
    );
    path
}

/// Starts foxrouter on port 0 everywhere, optionally with a TOML configuration.
pub fn start_router(config_toml: Option<&str>) -> Router {
    let mut command = Command::new(foxrouter_bin());
    command.args([
        "serve",
        "--ws",
        "127.0.0.1:0",
        "--rawsocket",
        "127.0.0.1:0",
        "--mqtt",
        "127.0.0.1:0",
        "--admin",
        "off",
        "--log",
        "warn",
    ]);
    let dir = config_toml.map(|toml| {
        let dir = TempDir::new("foxrouter");
        let path = dir.path.join("foxrouter.toml");
        std::fs::write(&path, toml).expect("write router config");
        command.arg("--config").arg(path);
        dir
    });
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn foxrouter");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break; // Keep draining is not needed: the router logs to stderr.
            }
        }
    });
    let (mut ws, mut rawsocket, mut mqtt) = (None, None, None);
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while ws.is_none() || rawsocket.is_none() || mqtt.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("foxrouter printed no LISTEN lines within {STARTUP_TIMEOUT:?}")
        });
        let mut words = line.split_whitespace();
        if words.next() != Some("LISTEN") {
            continue;
        }
        let (kind, addr) = (words.next(), words.next().and_then(|a| a.parse().ok()));
        match kind {
            Some("ws") => ws = addr,
            Some("rawsocket") => rawsocket = addr,
            Some("mqtt") => mqtt = addr,
            _ => {}
        }
    }
    Router {
        child,
        ws: ws.unwrap(),
        rawsocket: rawsocket.unwrap(),
        mqtt: mqtt.unwrap(),
        _dir: dir,
    }
}

/// A temporary directory, removed on drop.
pub struct TempDir {
    /// Its path.
    pub path: PathBuf,
}

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A running mosquitto; killed on drop.
pub struct Mosquitto {
    child: Child,
    /// Its listener.
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts mosquitto on a free loopback port and waits until it accepts connections.
pub fn start_mosquitto() -> Mosquitto {
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("mosquitto not installed (apt-get install mosquitto)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("mosquitto");
    let config = dir.path.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .expect("write config");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mosquitto");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Mosquitto {
        child,
        addr,
        _dir: dir,
    }
}

/// Awaits `future` for at most 10 s.
pub async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("timed out after 10 s")
}
