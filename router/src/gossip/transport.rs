//! chitchat over UDP, sealed with the cluster secret.
//!
//! chitchat's own UDP transport sends its messages in the clear, and its wire encoding is
//! private to the crate, so the sealing happens around it: chitchat's socket is bound to a
//! private loopback port and talks only to this transport's relay socket, also on
//! loopback. What chitchat sends to a peer goes to the relay, which seals it (a 16-byte
//! HMAC-SHA256 tag keyed by the cluster secret) and sends it from the node's public gossip
//! socket; what arrives there is checked and, if it is genuine, handed to chitchat's socket
//! through the relay, with the peer's address put back. A datagram without a valid tag is
//! dropped, and counted; the first one is logged. Replaying a genuine datagram achieves
//! nothing: gossip state is versioned, and older versions are ignored.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::ChitchatEnvelope;
use futures_util::FutureExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first bytes of a sealed datagram.
const MAGIC: &[u8; 4] = b"FXG1";
/// The tag's length (HMAC-SHA256, truncated).
const TAG_BYTES: usize = 16;
/// The largest UDP payload over IPv4.
const DATAGRAM_MAX: usize = 65_507;
/// How long a message may take between chitchat's socket and the relay (loopback).
const RELAY_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Counters of what the gossip socket refused.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Datagrams without a valid seal (garbage, another cluster, a forger).
    pub unsealed: AtomicU64,
    /// Datagrams chitchat made too large to seal.
    pub oversized: AtomicU64,
    logged: AtomicBool,
}

/// A [`Transport`] whose datagrams carry a tag keyed by the cluster secret.
pub struct SealedUdp {
    key: Vec<u8>,
    refusals: Arc<Refusals>,
}

impl SealedUdp {
    /// Seals with a key derived from the cluster's `secret` and `name`.
    pub fn new(secret: &[u8], name: &str, refusals: Arc<Refusals>) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"foxrouter gossip\0");
        mac.update(name.as_bytes());
        Self {
            key: mac.finalize().into_bytes().to_vec(),
            refusals,
        }
    }
}

fn mac(key: &[u8], payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload);
    mac
}

/// `payload` sealed.
pub fn seal(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let tag = mac(key, payload).finalize().into_bytes();
    let mut out = Vec::with_capacity(MAGIC.len() + TAG_BYTES + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&tag[..TAG_BYTES]);
    out.extend_from_slice(payload);
    out
}

/// The payload of a sealed datagram, if its tag is valid (checked in constant time).
pub fn open<'a>(key: &[u8], datagram: &'a [u8]) -> Option<&'a [u8]> {
    let rest = datagram.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < TAG_BYTES {
        return None;
    }
    let (tag, payload) = rest.split_at(TAG_BYTES);
    mac(key, payload).verify_truncated_left(tag).ok()?;
    Some(payload)
}

#[async_trait]
impl Transport for SealedUdp {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let public = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the gossip socket {listen_addr}/UDP: {e}"))?;
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let inner = UdpSocket::open(loopback).await?;
        let relay = tokio::net::UdpSocket::bind(loopback).await?;
        let inner_addr = inner.local_addr()?;
        let relay_addr = relay.local_addr()?;
        Ok(Box::new(SealedSocket {
            key: self.key.clone(),
            public,
            inner,
            inner_addr,
            relay,
            relay_addr,
            buf: vec![0; DATAGRAM_MAX + 1],
            refusals: self.refusals.clone(),
        }))
    }
}

struct SealedSocket {
    key: Vec<u8>,
    /// The node's gossip address: sealed datagrams only.
    public: tokio::net::UdpSocket,
    /// chitchat's own socket, on loopback, which speaks only with `relay`.
    inner: UdpSocket,
    inner_addr: SocketAddr,
    relay: tokio::net::UdpSocket,
    relay_addr: SocketAddr,
    buf: Vec<u8>,
    refusals: Arc<Refusals>,
}

impl SealedSocket {
    fn refuse(&self, from: SocketAddr, why: &str) {
        self.refusals.unsealed.fetch_add(1, Ordering::Relaxed);
        if !self.refusals.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(%from, why, "gossip datagram dropped (logged once; counted in /api/v1/gossip)");
        }
    }
}

#[async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.public.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        // chitchat encodes it and sends it to the relay, on loopback: nothing else sends
        // to the relay but another local process, whose datagrams are skipped.
        self.inner.send(self.relay_addr, envelope).await?;
        // Loopback delivers it at once; the bound only keeps a lost datagram from stalling
        // chitchat's loop (gossip repeats itself).
        let relayed = tokio::time::timeout(RELAY_WAIT, async {
            loop {
                let (n, from) = self.relay.recv_from(&mut self.buf).await?;
                if from == self.inner_addr {
                    return Ok::<usize, std::io::Error>(n);
                }
            }
        })
        .await;
        let payload = match relayed {
            Ok(received) => &self.buf[..received?],
            Err(_) => {
                tracing::debug!("a gossip message did not reach the relay; not sent");
                return Ok(SendOutcome { num_bytes_sent: 0 });
            }
        };
        let sealed = seal(&self.key, payload);
        if sealed.len() > DATAGRAM_MAX {
            self.refusals.oversized.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                bytes = sealed.len(),
                "a gossip message is too large to seal; not sent"
            );
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        match self.public.send_to(&sealed, to).await {
            Ok(num_bytes_sent) => Ok(SendOutcome { num_bytes_sent }),
            Err(error) => {
                // A peer that is down (ICMP unreachable) is no reason to stop gossiping.
                tracing::debug!(%to, %error, "gossip datagram not sent");
                Ok(SendOutcome { num_bytes_sent: 0 })
            }
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        // A message handed to chitchat's socket by a receive that was cancelled before it
        // returned has lost its sender: dropped (gossip repeats itself).
        while let Some(stale) = self.inner.recv().now_or_never() {
            stale?;
        }
        loop {
            let (n, from) = match self.public.recv_from(&mut self.buf).await {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "gossip receive error");
                    continue;
                }
            };
            if n > DATAGRAM_MAX {
                self.refuse(from, "too large");
                continue;
            }
            let Some(payload) = open(&self.key, &self.buf[..n]) else {
                self.refuse(from, "no valid seal (not this cluster's, or forged)");
                continue;
            };
            self.relay.send_to(payload, self.inner_addr).await?;
            // chitchat drops what it cannot decode and waits for the next datagram, so the
            // wait is bounded: a decodable message of a genuine peer is what it returns.
            let received = tokio::time::timeout(RELAY_WAIT, self.inner.recv()).await;
            match received {
                Ok(Ok(mut outcome)) if outcome.from_addr == self.relay_addr => {
                    outcome.from_addr = from;
                    return Ok(outcome);
                }
                Ok(Ok(_)) => continue, // another local process wrote to chitchat's port
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    self.refuse(from, "sealed but not a chitchat message");
                    continue;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_opens_with_the_same_key_only() {
        let sealed = seal(b"k1", b"hello");
        assert_eq!(open(b"k1", &sealed), Some(&b"hello"[..]));
        assert_eq!(open(b"k2", &sealed), None);
        let mut flipped = sealed.clone();
        *flipped.last_mut().expect("bytes") ^= 1;
        assert_eq!(open(b"k1", &flipped), None);
        assert_eq!(open(b"k1", b"FXG1short"), None);
        assert_eq!(open(b"k1", b"garbage"), None);
    }
}
