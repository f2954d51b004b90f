//! MQTT 5.0 packet decoding and round trip. The check: `fox_mqtt_proto::fuzzing::v5`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fox_mqtt_proto::fuzzing::v5(data));
