//! `cluster.toml` parsing and validation (cluster/src/config.rs, compiled in by path: the
//! fox-cluster crate itself would build RocksDB). Never panics; a file that validates
//! serializes back to TOML that parses to the same file and validates again, and yields
//! a handshake configuration for every node.
#![no_main]

#[allow(dead_code, missing_docs)]
#[path = "../../cluster/src/config.rs"]
mod config;

use config::ClusterFile;
use fox_sequencer::NodeId;

fn check(text: &str) {
    let Ok(file) = toml::from_str::<ClusterFile>(text) else {
        return;
    };
    let Ok(warnings) = file.validate() else {
        return;
    };
    let _ = file.membership();
    for node in &file.nodes {
        let handshake = file.handshake_config(NodeId(node.id));
        assert!(
            handshake.is_ok(),
            "a valid file has no handshake for node {}",
            node.id
        );
    }
    let serialized = match toml::to_string(&file) {
        Ok(serialized) => serialized,
        Err(error) => panic!("a valid file does not serialize: {error}"),
    };
    let reparsed: ClusterFile = match toml::from_str(&serialized) {
        Ok(reparsed) => reparsed,
        Err(error) => panic!("serialized as {serialized:?}, which does not parse: {error}"),
    };
    assert_eq!(reparsed, file, "serialized as {serialized:?}");
    assert_eq!(reparsed.validate().ok(), Some(warnings));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
});
