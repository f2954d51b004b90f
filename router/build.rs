//! Records the versions of the libraries `foxrouter version` reports, from the workspace's
//! Cargo.lock (the versions this binary was built with).

use std::path::Path;

/// The libraries reported, in this order.
const REPORTED: &[&str] = &[
    "librocksdb-sys",
    "tokio",
    "tokio-tungstenite",
    "rustls",
    "raft",
    "axum",
];

fn main() {
    // Read when the script runs (not baked in when it was compiled: a target directory
    // shared by two checkouts may reuse the script compiled for the other one).
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock = Path::new(&manifest_dir).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut found = Vec::new();
    for wanted in REPORTED {
        let needle = format!("name = \"{wanted}\"\nversion = \"");
        let version = text
            .find(&needle)
            .map(|at| &text[at + needle.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("unknown");
        found.push(format!("{wanted} {version}"));
    }
    println!("cargo:rustc-env=FOXROUTER_LIBRARIES={}", found.join(";"));
}
