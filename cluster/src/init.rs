//! `foxrouter cluster init DIR`: writes `DIR/cluster.toml` (fresh secret) and
//! `DIR/supervisord.ini` (one program per node), logs under `DIR/logs`, data under `DIR/data`.
//!
//! Node IDs count from 1: entries first, then ndb, then sync. Ports count from
//! `base_port`: each entry takes five (peer, ws, rawsocket, mqtt, admin), each other node two
//! (peer, admin).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::config::{hex_encode, ClusterFile, ConfigError, NodeSpec, Role};

/// What `init` lays out.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Entry routers. Default 3.
    pub entries: u32,
    /// ndb nodes. Default 3.
    pub ndb: u32,
    /// sync nodes. Default 3.
    pub sync: u32,
    /// Address every node binds. Default 127.0.0.1.
    pub host: IpAddr,
    /// First port. Default 7100.
    pub base_port: u16,
    /// Cluster name. Default "fox".
    pub name: String,
    /// The `foxrouter` binary supervisord runs. Default "foxrouter" (found on PATH).
    pub binary: PathBuf,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            entries: 3,
            ndb: 3,
            sync: 3,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 7100,
            name: "fox".into(),
            binary: PathBuf::from("foxrouter"),
        }
    }
}

/// What `init` wrote.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// `DIR/cluster.toml`.
    pub cluster_file: PathBuf,
    /// `DIR/supervisord.ini`.
    pub supervisord_file: PathBuf,
    /// The cluster it describes.
    pub cluster: ClusterFile,
    /// Validation warnings (even tiers).
    pub warnings: Vec<String>,
}

/// Writes a new cluster into `dir` (created if missing). Refuses to overwrite a
/// `cluster.toml`, whose secret the running nodes share.
pub fn init(dir: &Path, options: &InitOptions) -> Result<InitReport, ConfigError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    std::fs::create_dir_all(dir.join("logs")).map_err(io(dir))?;
    std::fs::create_dir_all(dir.join("data")).map_err(io(dir))?;
    let dir = dir.canonicalize().map_err(io(dir))?;
    let cluster_file = dir.join("cluster.toml");
    if cluster_file.exists() {
        return Err(ConfigError::Exists(cluster_file));
    }
    let cluster = layout(&dir, options)?;
    let warnings = cluster.validate()?;
    let text = toml::to_string(&cluster).map_err(|error| ConfigError::Parse {
        path: cluster_file.clone(),
        message: error.to_string(),
    })?;
    let header = "# Written by `foxrouter cluster init`; keys are documented in docs/cluster.md.\n\
                  # The secret admits nodes to the cluster: keep this file private.\n\n";
    write_private(&cluster_file, &format!("{header}{text}"))?;
    let supervisord_file = dir.join("supervisord.ini");
    let ini = supervisord_ini(&dir, &cluster, &options.binary);
    std::fs::write(&supervisord_file, ini).map_err(io(&supervisord_file))?;
    Ok(InitReport {
        cluster_file,
        supervisord_file,
        cluster,
        warnings,
    })
}

fn layout(dir: &Path, options: &InitOptions) -> Result<ClusterFile, ConfigError> {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let mut port = options.base_port;
    let mut next_address = || -> Result<SocketAddr, ConfigError> {
        let address = SocketAddr::new(options.host, port);
        port = port
            .checked_add(1)
            .ok_or_else(|| ConfigError::Invalid("ports run past 65535".into()))?;
        Ok(address)
    };
    let mut nodes = Vec::new();
    let tiers = [
        (Role::Entry, options.entries),
        (Role::Ndb, options.ndb),
        (Role::Sync, options.sync),
    ];
    for (role, count) in tiers {
        for _ in 0..count {
            let id = nodes.len() as u32 + 1;
            let mut node = NodeSpec {
                id,
                role,
                peer: next_address()?,
                ws: None,
                rawsocket: None,
                mqtt: None,
                admin: None,
                data: None,
                rank: None,
                snapshot_interval_entries: None,
            };
            if role == Role::Entry {
                node.ws = Some(next_address()?);
                node.rawsocket = Some(next_address()?);
                node.mqtt = Some(next_address()?);
            }
            // Every node keeps data: ndb and sync their store, an entry the snapshot of
            // the state it derives from the log (without one it replays the whole log).
            node.data = Some(dir.join("data").join(format!("n{id}")));
            node.admin = Some(next_address()?);
            nodes.push(node);
        }
    }
    Ok(ClusterFile {
        name: options.name.clone(),
        secret: hex_encode(&secret),
        nodes,
        gossip: Default::default(),
    })
}

fn supervisord_ini(dir: &Path, cluster: &ClusterFile, binary: &Path) -> String {
    let dir = dir.display();
    let mut ini = format!(
        "; Written by `foxrouter cluster init`: one program per node of {dir}/cluster.toml.\n\
         ; Run: supervisord -c {dir}/supervisord.ini   (logs in {dir}/logs)\n\n\
         [supervisord]\nnodaemon=true\nlogfile={dir}/logs/supervisord.log\n\
         pidfile={dir}/logs/supervisord.pid\nchildlogdir={dir}/logs\n\n\
         [unix_http_server]\nfile={dir}/logs/supervisor.sock\n\n\
         [rpcinterface:supervisor]\n\
         supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
         [supervisorctl]\nserverurl=unix://{dir}/logs/supervisor.sock\n"
    );
    for node in &cluster.nodes {
        let (id, role) = (node.id, node.role.name());
        // Writing into a String cannot fail.
        let _ = write!(
            ini,
            "\n[program:{role}-n{id}]\n\
             command={binary} node --cluster {dir}/cluster.toml --id {id}\n\
             autorestart=true\nstopsignal=TERM\nstopwaitsecs=10\n\
             stdout_logfile={dir}/logs/n{id}.out\nstderr_logfile={dir}/logs/n{id}.err\n",
            binary = binary.display(),
        );
    }
    ini
}

fn write_private(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_valid_cluster_and_refuses_to_overwrite_it() {
        let dir = tempfile::tempdir().unwrap();
        let report = init(dir.path(), &InitOptions::default()).unwrap();
        let (loaded, warnings) = ClusterFile::load(&report.cluster_file).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(loaded, report.cluster);
        assert_eq!(loaded.nodes.len(), 9);
        assert_eq!(loaded.ids(Role::Sync).len(), 3);
        assert_eq!(loaded.secret_bytes().unwrap().len(), 32);
        let entry = loaded.node(1).unwrap();
        assert_eq!(
            entry.admin.map(|a| a.port()),
            Some(7104),
            "peer, ws, rawsocket, mqtt, then admin"
        );
        let ndb = loaded.node(4).unwrap();
        assert_eq!(ndb.peer.port(), 7115);
        assert_eq!(
            ndb.admin.map(|a| a.port()),
            Some(7116),
            "ndb: peer, then admin"
        );
        assert_eq!(loaded.node(9).unwrap().admin.map(|a| a.port()), Some(7126));
        let ini = std::fs::read_to_string(&report.supervisord_file).unwrap();
        assert_eq!(ini.matches("[program:").count(), 9);
        assert!(ini.contains("node --cluster"));
        assert!(matches!(
            init(dir.path(), &InitOptions::default()),
            Err(ConfigError::Exists(_))
        ));
        let other = tempfile::tempdir().unwrap();
        let second = init(other.path(), &InitOptions::default()).unwrap();
        assert_ne!(second.cluster.secret, report.cluster.secret);
    }

    #[test]
    fn ports_past_the_end_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let options = InitOptions {
            base_port: 65_530,
            ..InitOptions::default()
        };
        assert!(init(dir.path(), &options).is_err());
    }
}
