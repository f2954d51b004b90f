//! Where [`compact_history`](crate::Store::compact_history) cuts. Shared by both stores so
//! they delete exactly the same records.

use crate::{RetentionPolicy, StoreError};

/// What retention needs to know of one record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) size_bytes: u64,
}

/// The first ID to keep: every record below it goes. `None`: delete nothing.
///
/// `newest_first` is consumed only for count/bytes limits and only as far as the kept
/// records reach; `oldest_first` only for the age limit and only over expired records.
pub(crate) fn first_kept_id<N, O>(
    policy: &RetentionPolicy,
    now_ms: u64,
    newest_first: N,
    oldest_first: O,
) -> Result<Option<u64>, StoreError>
where
    N: Iterator<Item = Result<Entry, StoreError>>,
    O: Iterator<Item = Result<Entry, StoreError>>,
{
    let by_size = if policy.max_count.is_some() || policy.max_bytes.is_some() {
        cut_by_size(policy, newest_first)?
    } else {
        None
    };
    let by_age = match policy.max_age_ms {
        Some(max_age_ms) => cut_by_age(max_age_ms, now_ms, oldest_first)?,
        None => None,
    };
    Ok(by_size.max(by_age))
}

fn cut_by_size<N>(policy: &RetentionPolicy, newest_first: N) -> Result<Option<u64>, StoreError>
where
    N: Iterator<Item = Result<Entry, StoreError>>,
{
    let count_max = policy.max_count.unwrap_or(u64::MAX);
    let bytes_max = policy.max_bytes.unwrap_or(u64::MAX);
    let mut bytes: u64 = 0;
    // `count` newer records are kept when `entry` is looked at.
    for (count, entry) in (0u64..).zip(newest_first) {
        let entry = entry?;
        let bytes_with = bytes.saturating_add(entry.size_bytes);
        if count >= count_max || bytes_with > bytes_max {
            return Ok(Some(entry.id + 1));
        }
        bytes = bytes_with;
    }
    Ok(None)
}

fn cut_by_age<O>(max_age_ms: u64, now_ms: u64, oldest_first: O) -> Result<Option<u64>, StoreError>
where
    O: Iterator<Item = Result<Entry, StoreError>>,
{
    let mut cut = None;
    for entry in oldest_first {
        let entry = entry?;
        if now_ms.saturating_sub(entry.timestamp_ms) <= max_age_ms {
            break;
        }
        cut = Some(entry.id + 1);
    }
    Ok(cut)
}
