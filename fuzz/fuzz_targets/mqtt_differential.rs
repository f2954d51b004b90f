//! MQTT decoding agrees with mqttbytes 0.6 (3.1.1; 5.0 PUBLISH). The check: `fox_mqtt_proto::fuzzing::differential::check`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fox_mqtt_proto::fuzzing::differential::check(data));
