//! Replays the committed corpora and regressions through the fuzz targets' checks.

use std::path::{Path, PathBuf};

use bytes::BytesMut;

use super::*;

/// A fuzz target's check.
type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 6] = [
    ("mqtt_v3_1", v3_1),
    ("mqtt_v3_1_1", v3_1_1),
    ("mqtt_v5", v5),
    ("mqtt_connect", connect),
    ("mqtt_stream", stream),
    ("mqtt_differential", differential::check),
];

fn fuzz_dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target)
}

/// The files of `dir`, sorted; none when it does not exist (an empty regressions folder
/// is not in git).
fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    paths
        .into_iter()
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).expect("reads a committed fuzz input");
            (path, bytes)
        })
        .collect()
}

#[test]
fn committed_corpora_and_regressions_replay() {
    for (target, check) in TARGETS {
        let corpus = inputs(&fuzz_dir("corpus", target));
        assert!(!corpus.is_empty(), "no seed corpus for {target}");
        for (path, bytes) in corpus
            .iter()
            .chain(&inputs(&fuzz_dir("regressions", target)))
        {
            println!("{}", path.display());
            check(bytes);
        }
    }
}

#[test]
fn seeds_pass_their_checks() {
    let write = std::env::var_os("FOX_FUZZ_WRITE_SEEDS").is_some();
    for (target, check) in TARGETS {
        let seeds = seeds(target);
        assert!(!seeds.is_empty(), "{target}");
        for (index, seed) in seeds.iter().enumerate() {
            check(seed);
            if write {
                let dir = fuzz_dir("corpus", target);
                std::fs::create_dir_all(&dir).expect("creates the corpus folder");
                std::fs::write(dir.join(format!("seed-{index:02}")), seed).expect("writes a seed");
            }
        }
    }
}

/// Each committed `mqtt_differential` regression named for a clause is a real
/// disagreement: `mqttbytes` accepts it and we reject it (so the check passes only through
/// `MQTTBYTES_LAXER`, and would fail if either side changed).
#[test]
fn differential_regressions_named_for_a_clause_still_disagree() {
    for (path, bytes) in inputs(&fuzz_dir("regressions", "mqtt_differential")) {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if !name.contains("mqtt-3") && !name.contains("3.2.2.1") {
            continue;
        }
        let protocol = (bytes[0] >> 4 != 1).then_some(crate::Protocol::V3_1_1);
        let ours = crate::decode(&mut BytesMut::from(&bytes[..]), protocol, 1 << 20);
        assert!(ours.is_err(), "{name}: we accept it");
        let theirs = mqttbytes::v4::read(&mut BytesMut::from(&bytes[..]), 1 << 20);
        assert!(theirs.is_ok(), "{name}: mqttbytes rejects it: {theirs:?}");
    }
}
