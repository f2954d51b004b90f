//! WAMP CBOR message decoding: never panics; accepted messages round-trip. The check: `fox_wamp_proto::fuzzing::cbor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fox_wamp_proto::fuzzing::cbor(data));
