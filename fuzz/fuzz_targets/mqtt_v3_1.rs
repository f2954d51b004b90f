//! MQTT 3.1 packet decoding and round trip. The check: `fox_mqtt_proto::fuzzing::v3_1`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fox_mqtt_proto::fuzzing::v3_1(data));
