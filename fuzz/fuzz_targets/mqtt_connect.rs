//! A connection's first packet (CONNECT of any version) and round trip. The check: `fox_mqtt_proto::fuzzing::connect`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fox_mqtt_proto::fuzzing::connect(data));
