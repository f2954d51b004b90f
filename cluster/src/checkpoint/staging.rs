//! The catching-up ndb's staging directory (`data/.catchup`): what is kept for a resumed
//! pull, the marker of a complete one, and the swap into the data directory.

use std::collections::{HashMap, HashSet};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use fox_sequencer::config::wire_limits::CHECKPOINT_CHUNK_BYTES_MAX;
use fox_sequencer::{CheckpointFile, NodeId};
use fox_storage::{NodeStore, SyncMode};

use super::{
    hash_file, io_error, sync_dir, valid_file_name, COMPLETE, PART_SUFFIX, SOURCE, STAGING_DIR,
};
use crate::disk;
use crate::error::ClusterError;

/// Finishes a swap that a crash interrupted: if `data/.catchup/COMPLETE` is there, every
/// file of the old store goes and the staged ones move in. Call before opening the store.
/// Whether there was one. Blocking.
pub fn finish_swap(data: &Path) -> Result<bool, ClusterError> {
    let staging = data.join(STAGING_DIR);
    let marker = staging.join(COMPLETE);
    let listed = match std::fs::read_to_string(&marker) {
        Ok(listed) => listed,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(io_error("reading the catch-up marker")(error)),
    };
    let names: HashSet<&str> = listed
        .lines()
        .filter(|name| valid_file_name(name))
        .collect();
    let listing = std::fs::read_dir(data).map_err(io_error("listing the data directory"))?;
    for entry in listing {
        let entry = entry.map_err(io_error("listing the data directory"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == STAGING_DIR || names.contains(name.as_str()) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io_error(format!("removing {}", path.display())))?;
    }
    for name in &names {
        let from = staging.join(name);
        if from.exists() {
            std::fs::rename(&from, data.join(name))
                .map_err(io_error(format!("moving {}", from.display())))?;
        }
    }
    sync_dir(data).map_err(io_error("syncing the data directory"))?;
    std::fs::remove_dir_all(&staging).map_err(io_error("removing the staging directory"))?;
    Ok(true)
}

/// The name a file is pulled under until it is complete and checked: its name, the peer
/// it comes from and its size, so that a partial file is resumed only against the same
/// file (another peer's checkpoint may have a file of the same name with other bytes; one
/// peer's RocksDB never writes two files of one name, and its WAL and MANIFEST only
/// grow). The SHA-256 check at the end catches whatever this misses.
pub(super) fn part_name(file: &CheckpointFile, peer: NodeId) -> String {
    format!("{}.n{}-{}{PART_SUFFIX}", file.name, peer.0, file.bytes)
}

/// Writes `chunks` one after the other into `path` from `at` (creating it). Blocking.
/// Writes `chunks` one after the other into `path` from `at` (creating it), and with
/// `sync` waits for them on disk. Blocking.
pub(super) fn write_at(
    path: &Path,
    at: u64,
    chunks: &[Vec<u8>],
    sync: bool,
) -> Result<(), ClusterError> {
    let context = || format!("writing {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_error(context()))?;
    file.seek(SeekFrom::Start(at))
        .map_err(io_error(context()))?;
    for chunk in chunks {
        file.write_all(chunk).map_err(io_error(context()))?;
    }
    if sync {
        file.sync_data().map_err(io_error(context()))?;
    }
    Ok(())
}

/// Readies the staging directory for `files`: keeps a staged file whose size and SHA-256
/// match, keeps a partial one to resume (cut back to whole chunks), removes everything
/// else (a marker of an earlier complete pull included). The files still to pull, each
/// with the offset to resume from. Blocking.
pub(super) fn prepare_staging(
    staging: &Path,
    files: &[CheckpointFile],
    peer: NodeId,
) -> Result<Vec<(CheckpointFile, u64)>, ClusterError> {
    std::fs::create_dir_all(staging).map_err(io_error("creating the staging directory"))?;
    let wanted: HashMap<&str, &CheckpointFile> = files
        .iter()
        .map(|file| (file.name.as_str(), file))
        .collect();
    let parts: HashMap<String, &CheckpointFile> = files
        .iter()
        .map(|file| (part_name(file, peer), file))
        .collect();
    let mut done = HashSet::new();
    let mut partial = HashMap::new();
    let listing = std::fs::read_dir(staging).map_err(io_error("listing the staging directory"))?;
    for entry in listing {
        let entry = entry.map_err(io_error("listing the staging directory"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let size = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        let keep = if name == SOURCE {
            true
        } else if name.ends_with(PART_SUFFIX) {
            match parts.get(&name) {
                Some(file) if size <= file.bytes => {
                    // Whole pieces only, and never past the last one: its answer carries
                    // the file's hash when the listing had none.
                    let chunk = CHECKPOINT_CHUNK_BYTES_MAX as u64;
                    let last_piece = file.bytes.saturating_sub(1) / chunk * chunk;
                    partial.insert(file.name.clone(), (size / chunk * chunk).min(last_piece));
                    true
                }
                _ => false,
            }
        } else {
            match wanted.get(name.as_str()) {
                Some(file) if size == file.bytes => {
                    let hash = hash_file(&path).map_err(io_error("hashing a staged file"))?;
                    if file.sha256 == Some(hash) {
                        done.insert(name.clone());
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            }
        };
        if !keep {
            let removed = if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io_error(format!("removing {}", path.display())))?;
        }
    }
    Ok(files
        .iter()
        .filter(|file| !done.contains(&file.name))
        .map(|file| (file.clone(), partial.get(&file.name).copied().unwrap_or(0)))
        .collect())
}

/// Copies `old`'s temporary segments into the staged store, then writes the COMPLETE
/// marker (every file then in the staging directory). Blocking.
pub(super) fn complete_staging(old: &NodeStore, staging: &Path) -> Result<(), ClusterError> {
    let temps = disk::ndb_temp_copy(old)?;
    {
        let staged = NodeStore::open(staging, disk::NDB_FAMILIES, SyncMode::Fsync)?;
        if !temps.is_empty() {
            staged.write(&temps, true)?;
        }
        staged.sync_wal()?;
    }
    let mut names = Vec::new();
    let listing = std::fs::read_dir(staging).map_err(io_error("listing the staging directory"))?;
    for entry in listing {
        let entry = entry.map_err(io_error("listing the staging directory"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().is_ok_and(|kind| kind.is_file()) && valid_file_name(&name) {
            names.push(name);
        }
    }
    names.sort();
    let marker = staging.join(COMPLETE);
    let written = format!("{}\n", names.join("\n"));
    let pending = staging.join(format!("{COMPLETE}{PART_SUFFIX}"));
    std::fs::write(&pending, written).map_err(io_error("writing the catch-up marker"))?;
    std::fs::File::open(&pending)
        .and_then(|file| file.sync_all())
        .map_err(io_error("syncing the catch-up marker"))?;
    std::fs::rename(&pending, &marker).map_err(io_error("writing the catch-up marker"))?;
    sync_dir(staging).map_err(io_error("syncing the staging directory"))?;
    Ok(())
}

/// Fsyncs a pulled part file, checks it against `sha256` (the peer's, from the listing or
/// the file's last piece) and renames it to `target`; a mismatch removes it (`false`).
/// An empty file needs no hash. Blocking.
pub(super) fn seal_file(
    part: &Path,
    target: &Path,
    file: &CheckpointFile,
    sha256: Option<[u8; 32]>,
) -> Result<bool, ClusterError> {
    if file.bytes == 0 {
        write_at(part, 0, &[], false)?;
    }
    std::fs::File::open(part)
        .and_then(|opened| opened.sync_all())
        .map_err(io_error(format!("syncing {}", part.display())))?;
    let hash = hash_file(part).map_err(io_error("hashing a pulled file"))?;
    if file.bytes > 0 && sha256 != Some(hash) {
        let _ = std::fs::remove_file(part);
        return Ok(false);
    }
    std::fs::rename(part, target).map_err(io_error(format!("renaming {}", file.name)))?;
    Ok(true)
}
