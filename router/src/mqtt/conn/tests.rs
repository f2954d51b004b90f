/// What an idle connection costs is mostly its future (issue 6: 4 KiB per idle MQTT
/// connection): the CONNECT step lives in its own box, the session is boxed, the read
/// is a hand-written poll, the backpressure wait is boxed while it lasts, and the select
/// loop is boxed per activation (an idle connection waits in `idle`, which holds no future
/// of its own). Measured 520 bytes when this test was last changed (944 before the select
/// loop was boxed per activation, 4,296 before the CONNECT step was boxed, 1,776 before
/// the rest).
#[tokio::test]
async fn the_connection_future_stays_small() {
    let router = crate::router::Router::new(crate::config::Config::default());
    let (stream, _peer) = tokio::io::duplex(64);
    let (reader, writer) = tokio::io::split(stream);
    let serve = super::serve(router, reader, writer, "mqtt", String::new(), None);
    let size = std::mem::size_of_val(&serve);
    assert!(size <= 640, "the MQTT connection future is {size} bytes");
}

/// The session is boxed and lives as long as the connection: a will and the MQTT 5
/// topic aliases, which most sessions never have, are boxed inside it (424 bytes when
/// this test was written, 680 with them inline).
#[test]
fn an_idle_session_stays_small() {
    let size = std::mem::size_of::<super::Session>();
    assert!(size <= 440, "the MQTT session is {size} bytes");
}

/// `read_some` clears the socket's readiness after a read that drained it. Bytes that
/// arrive afterwards must still wake the next `read_some`: a lost wake-up stalls this
/// stream and the test times out. Both sides run on a multi-threaded runtime, so
/// arrivals race the reads. (The narrowest window, bytes that land between the read
/// and the clear, is closed by the readiness tick `try_io` snapshots before the read;
/// this test cannot force that window, it only makes it possible.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_drain_the_socket_miss_no_later_bytes() {
    use super::Source;
    use tokio::io::AsyncWriteExt;
    const CHUNKS: usize = 2_000;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let writer = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        for i in 0..CHUNKS {
            // 1 to 7 bytes, now and then after a pause: many reads drain the socket.
            let chunk = vec![(i % 251) as u8; 1 + i % 7];
            stream.write_all(&chunk).await.unwrap();
            if i % 3 == 0 {
                tokio::task::yield_now().await;
            }
            if i % 97 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    });
    let (stream, _) = listener.accept().await.unwrap();
    let (mut reader, _write) = stream.into_split();
    let expected: usize = (0..CHUNKS).map(|i| 1 + i % 7).sum();
    let mut input = bytes::BytesMut::new();
    let mut total = 0;
    let mut reads = 0;
    while total < expected {
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            reader.read_some(&mut input),
        )
        .await
        .expect("a read after a draining read must be woken by new bytes")
        .unwrap();
        assert!(read > 0, "end of stream after {total} of {expected} bytes");
        total += read;
        reads += 1;
        input.clear();
    }
    assert_eq!(total, expected);
    assert!(reads > 1, "the bytes came in more than one read");
    writer.await.unwrap();
}

/// Connection tests over real loopback sockets: a router, one `serve_tcp` task per
/// accepted connection, clients writing raw MQTT 3.1.1 / 5 bytes.
mod over_tcp {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::router::Router;

    /// Longest any step waits: a failure is a timeout, not a hang.
    const STEP_TIMEOUT: Duration = Duration::from_secs(5);

    /// A listener whose connections are served by `router`.
    async fn listen(router: Arc<Router>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                tokio::spawn(super::super::serve_tcp(
                    router.clone(),
                    stream,
                    peer.to_string(),
                ));
            }
        });
        addr
    }

    /// CONNECT for `client` (two bytes) at protocol `level` (4: 3.1.1, 5), clean start.
    fn connect(level: u8, client: &[u8; 2], keep_alive_secs: u8) -> Vec<u8> {
        let mut packet = vec![0x10, 0x0E, 0, 4, b'M', b'Q', b'T', b'T', level, 0x02];
        packet.extend_from_slice(&[0, keep_alive_secs]);
        if level == 5 {
            packet.push(0); // no properties
            packet[1] += 1;
        }
        packet.extend_from_slice(&[0, 2, client[0], client[1]]);
        packet
    }

    /// Connects `client` and reads its CONNACK.
    async fn connected(
        addr: std::net::SocketAddr,
        level: u8,
        client: &[u8; 2],
        keep_alive_secs: u8,
    ) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&connect(level, client, keep_alive_secs))
            .await
            .unwrap();
        let connack = read_packet(&mut stream).await.expect("CONNACK");
        assert_eq!(connack[0], 0x20, "CONNACK: {connack:?}");
        stream
    }

    /// The next packet (fixed header included; lengths under 128), `None` at the end of
    /// the stream.
    async fn read_packet(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut header = [0u8; 2];
        let read = tokio::time::timeout(STEP_TIMEOUT, stream.read_exact(&mut header))
            .await
            .expect("a packet or the end of the stream in time");
        if read.is_err() {
            return None;
        }
        assert!(header[1] < 0x80, "short packets only");
        let mut packet = header.to_vec();
        packet.resize(2 + usize::from(header[1]), 0);
        stream.read_exact(&mut packet[2..]).await.ok()?;
        Some(packet)
    }

    /// Reads until the router closes the connection; the packets read before.
    async fn until_closed(stream: &mut TcpStream) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        while let Some(packet) = read_packet(stream).await {
            packets.push(packet);
        }
        packets
    }

    /// A silent client is closed once 1.5 times its keep alive has passed (MQTT-3.1.2-24),
    /// also when it waits idle, and a PINGREQ moves the deadline: the timer armed at the
    /// first deadline re-arms at the new one.
    #[tokio::test]
    async fn keep_alive_closes_a_silent_idle_client_at_one_and_a_half() {
        let addr = listen(Router::new(crate::config::Config::default())).await;
        let started = Instant::now();
        let mut client = connected(addr, 4, b"ka", 1).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        client.write_all(&[0xC0, 0x00]).await.unwrap();
        assert_eq!(
            read_packet(&mut client).await,
            Some(vec![0xD0, 0x00]),
            "PINGRESP"
        );
        let pinged = Instant::now();
        assert!(
            until_closed(&mut client).await.is_empty(),
            "3.1.1: closed without a packet"
        );
        let silent = pinged.elapsed();
        assert!(
            silent >= Duration::from_millis(1_400),
            "closed {silent:?} after the PINGREQ"
        );
        assert!(
            silent <= Duration::from_millis(2_500),
            "closed {silent:?} after the PINGREQ"
        );
        assert!(started.elapsed() >= Duration::from_millis(2_400));
    }

    /// An idle subscriber is woken by a message queued for it.
    #[tokio::test]
    async fn a_queued_message_wakes_an_idle_connection() {
        let addr = listen(Router::new(crate::config::Config::default())).await;
        let mut subscriber = connected(addr, 4, b"s1", 60).await;
        subscriber
            .write_all(&[0x82, 0x06, 0, 1, 0, 1, b't', 0])
            .await
            .unwrap();
        assert_eq!(
            read_packet(&mut subscriber).await,
            Some(vec![0x90, 0x03, 0, 1, 0]),
            "SUBACK"
        );
        // Nothing to do now: the subscriber's connection waits idle.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut publisher = connected(addr, 4, b"p1", 60).await;
        publisher
            .write_all(&[0x30, 0x05, 0, 1, b't', b'h', b'i'])
            .await
            .unwrap();
        assert_eq!(
            read_packet(&mut subscriber).await,
            Some(vec![0x30, 0x05, 0, 1, b't', b'h', b'i']),
            "the PUBLISH"
        );
    }

    /// An idle connection is woken by a takeover (a newer connection with its client
    /// identifier: MQTT 5 DISCONNECT 0x8E) and by the router shutting down (0x8B).
    #[tokio::test]
    async fn takeover_and_shutdown_wake_an_idle_connection() {
        let router = Router::new(crate::config::Config::default());
        let addr = listen(router.clone()).await;
        let mut first = connected(addr, 5, b"tk", 60).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = connected(addr, 5, b"tk", 60).await;
        assert_eq!(
            until_closed(&mut first).await,
            vec![vec![0xE0, 0x01, 0x8E]],
            "taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        router.shut_down();
        assert_eq!(
            until_closed(&mut second).await,
            vec![vec![0xE0, 0x01, 0x8B]],
            "shutting down"
        );
    }
}
