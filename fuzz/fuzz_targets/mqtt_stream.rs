//! The streaming MQTT decoder: piecewise reads equal one whole read. The check: `fox_mqtt_proto::fuzzing::stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fox_mqtt_proto::fuzzing::stream(data));
