//! The realm's sessions, and the testaments they left to be published when they go: a
//! service with its own locks.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use super::{SessionHandle, SessionId, Testament};
use crate::locks::{lock, read, write};

/// The sessions of one realm, by ID, and their testaments.
#[derive(Debug, Default)]
pub struct Sessions {
    table: RwLock<HashMap<SessionId, SessionHandle>>,
    testaments: Mutex<HashMap<SessionId, Vec<Testament>>>,
}

impl Sessions {
    /// Adds a session.
    pub fn insert(&self, handle: SessionHandle) {
        write(&self.table).insert(handle.info.id, handle);
    }

    /// Removes a session, with the testaments it left; `None` if it was not there.
    pub fn remove(&self, session: SessionId) -> Option<(SessionHandle, Vec<Testament>)> {
        let handle = write(&self.table).remove(&session)?;
        let testaments = lock(&self.testaments).remove(&session).unwrap_or_default();
        Some((handle, testaments))
    }

    /// The session with this ID.
    pub fn get(&self, id: SessionId) -> Option<SessionHandle> {
        read(&self.table).get(&id).cloned()
    }

    /// Every session (a snapshot).
    pub fn all(&self) -> Vec<SessionHandle> {
        read(&self.table).values().cloned().collect()
    }

    /// Visits every session under the lock. `visit` must not call back into the realm.
    pub fn visit(&self, visit: impl FnMut(&SessionHandle)) {
        read(&self.table).values().for_each(visit);
    }

    /// Keeps a testament of `session`; `announce` is called first, under the testaments'
    /// lock (so that announcements keep the testaments' order), with the session if it is
    /// still here and the testament's index.
    pub fn add_testament(
        &self,
        session: SessionId,
        testament: Testament,
        announce: impl FnOnce(Option<&SessionHandle>, &Testament, u32),
    ) {
        let mut testaments = lock(&self.testaments);
        let held = testaments.entry(session).or_default();
        let index = u32::try_from(held.len()).unwrap_or(u32::MAX);
        announce(self.get(session).as_ref(), &testament, index);
        held.push(testament);
    }

    /// Drops a session's testaments; how many there were.
    pub fn flush_testaments(&self, session: SessionId) -> usize {
        lock(&self.testaments)
            .remove(&session)
            .map_or(0, |t| t.len())
    }
}
