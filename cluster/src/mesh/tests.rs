//! Two meshes on loopback: links come up both ways, messages flow, strangers are refused,
//! an older peer is sent only what its version has.

use super::*;
use fox_sequencer::wire::HandshakeConfig;
use std::time::Duration;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn handshake(node: u32, secret: &[u8]) -> HandshakeConfig {
    HandshakeConfig::new(NodeId(node), "fox", secret, (1..=3).map(NodeId))
}

fn quick_limits() -> MeshLimits {
    MeshLimits {
        heartbeat_ms: 50,
        idle_timeout_ms: 300,
        backoff_min_ms: 10,
        backoff_max_ms: 50,
        ..MeshLimits::default()
    }
}

async fn start(
    node: u32,
    secret: &[u8],
    listen: bool,
    dial: Vec<(NodeId, SocketAddr)>,
    shutdown: watch::Receiver<bool>,
) -> (Mesh, mpsc::Receiver<(NodeId, Message)>) {
    let (inbox, received) = mpsc::channel(64);
    let config = MeshConfig {
        handshake: handshake(node, secret),
        listen: listen.then(|| "127.0.0.1:0".parse().unwrap()),
        dial,
        limits: quick_limits(),
    };
    let mesh = Mesh::start(config, inbox, shutdown).await.unwrap();
    (mesh, received)
}

async fn wait_linked(mesh: &Mesh, peer: NodeId) {
    for _ in 0..300 {
        if mesh.is_linked(peer) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no link to {peer}");
}

#[tokio::test]
async fn links_carry_messages_both_ways_and_survive_idle_periods() {
    let (stop, shutdown) = watch::channel(false);
    let (server, mut server_inbox) = start(2, SECRET, true, vec![], shutdown.clone()).await;
    let address = server.local_addr().unwrap();
    let (client, mut client_inbox) =
        start(1, SECRET, false, vec![(NodeId(2), address)], shutdown).await;
    wait_linked(&client, NodeId(2)).await;
    wait_linked(&server, NodeId(1)).await;
    // Idle for longer than the idle timeout: heartbeats keep the link.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let message = Message::PullResolutions { from_index: 7 };
    client.send(NodeId(2), message.clone());
    let received = tokio::time::timeout(Duration::from_secs(5), server_inbox.recv()).await;
    assert_eq!(received.unwrap(), Some((NodeId(1), message.clone())));
    server.send(NodeId(1), message.clone());
    let received = tokio::time::timeout(Duration::from_secs(5), client_inbox.recv()).await;
    assert_eq!(received.unwrap(), Some((NodeId(2), message)));
    assert_eq!(client.stats().frames_dropped_no_link, 0);
    let _ = stop.send(true);
}

#[tokio::test]
async fn a_wrong_secret_never_links_and_is_counted() {
    let (stop, shutdown) = watch::channel(false);
    let (server, _inbox) = start(2, SECRET, true, vec![], shutdown.clone()).await;
    let address = server.local_addr().unwrap();
    let wrong = b"fedcba9876543210fedcba9876543210";
    let (client, _client_inbox) =
        start(1, wrong, false, vec![(NodeId(2), address)], shutdown).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!client.is_linked(NodeId(2)));
    assert!(!server.is_linked(NodeId(1)));
    assert!(server.stats().connections_refused >= 1);
    client.send(NodeId(2), Message::PullResolutions { from_index: 1 });
    assert_eq!(client.stats().frames_dropped_no_link, 1);
    let _ = stop.send(true);
}

#[tokio::test]
async fn shutdown_ends_the_links() {
    let (stop, shutdown) = watch::channel(false);
    let (server, _inbox) = start(2, SECRET, true, vec![], shutdown.clone()).await;
    let address = server.local_addr().unwrap();
    let (client, _client_inbox) =
        start(1, SECRET, false, vec![(NodeId(2), address)], shutdown).await;
    wait_linked(&client, NodeId(2)).await;
    let _ = stop.send(true);
    for _ in 0..300 {
        if !client.is_linked(NodeId(2)) && !server.is_linked(NodeId(1)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("links outlived the shutdown");
}

#[tokio::test]
async fn a_version_5_peer_links_and_is_sent_only_what_version_5_has() {
    let (stop, shutdown) = watch::channel(false);
    let (inbox, mut old_inbox) = mpsc::channel(64);
    let mut old_handshake = handshake(2, SECRET);
    old_handshake.version_max = 5;
    let old = MeshConfig {
        handshake: old_handshake,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        dial: vec![],
        limits: quick_limits(),
    };
    let old = Mesh::start(old, inbox, shutdown.clone()).await.unwrap();
    let address = old.local_addr().unwrap();
    let (new, _new_inbox) = start(1, SECRET, false, vec![(NodeId(2), address)], shutdown).await;
    wait_linked(&new, NodeId(2)).await;
    let too_new = Message::AbortOwner {
        owner: NodeId(3),
        cut_until_ms: 1,
    };
    new.send(NodeId(2), too_new);
    let known = Message::PullResolutions { from_index: 3 };
    new.send(NodeId(2), known.clone());
    let received = tokio::time::timeout(Duration::from_secs(5), old_inbox.recv()).await;
    assert_eq!(received.unwrap(), Some((NodeId(1), known)));
    assert_eq!(new.stats().frames_dropped_old_peer, 1);
    assert!(new.is_linked(NodeId(2)), "the link stays up");
    let _ = stop.send(true);
}
