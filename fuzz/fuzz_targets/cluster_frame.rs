//! Node-to-node frames: never panic; decoded messages round-trip. The check: `fox_sequencer::fuzzing::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fox_sequencer::fuzzing::frame(data));
