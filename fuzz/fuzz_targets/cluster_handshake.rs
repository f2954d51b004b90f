//! Node-to-node handshake: raw peer bytes, and a tampering relay. The check: `fox_sequencer::fuzzing::handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fox_sequencer::fuzzing::handshake(data));
