/// What an idle connection costs is mostly its future (issue 6: 4 KiB per idle MQTT
/// connection): the CONNECT step lives in its own box, the session is boxed, the read
/// is a hand-written poll and the backpressure wait is boxed while it lasts. Measured
/// 944 bytes when this test was last changed (4,296 before the CONNECT step was
/// boxed, 1,776 before the rest).
#[tokio::test]
async fn the_connection_future_stays_small() {
    let router = crate::router::Router::new(crate::config::Config::default());
    let (stream, _peer) = tokio::io::duplex(64);
    let (reader, writer) = tokio::io::split(stream);
    let serve = super::serve(router, reader, writer, "mqtt", String::new(), None);
    let size = std::mem::size_of_val(&serve);
    assert!(size <= 1_200, "the MQTT connection future is {size} bytes");
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
