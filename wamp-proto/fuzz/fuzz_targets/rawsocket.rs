//! The RawSocket handshake parsers and frame decoder must never panic.
#![no_main]

use fox_wamp_proto::rawsocket::{self, FrameDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(handshake) = data.first_chunk::<4>() {
        let _ = rawsocket::parse_client_handshake(*handshake);
        let _ = rawsocket::parse_server_handshake(*handshake);
    }
    let max_len = usize::from(data.first().copied().unwrap_or(0)) * 4;
    let mut decoder = FrameDecoder::new(max_len);
    for chunk in data.chunks(7) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => assert!(frame.payload.len() <= max_len),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
