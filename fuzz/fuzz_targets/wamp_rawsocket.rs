//! WAMP RawSocket handshake and frame decoder. The check: `fox_wamp_proto::fuzzing::rawsocket`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fox_wamp_proto::fuzzing::rawsocket(data));
