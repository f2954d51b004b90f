//! Faults: crashes and restarts (one ndb may lose its disk), partitions, the heal before
//! the liveness phase.

use super::*;

impl Sim {
    pub(super) fn draw_faults(rng: &mut SeededRng, faults: bool) -> NetworkFaults {
        if !faults {
            return NetworkFaults {
                delay_ms_min: 1,
                delay_ms_max: 2,
                loss_ppm: 0,
                duplicate_ppm: 0,
                corrupt_ppm: 0,
            };
        }
        let delay_ms_max = rng.range(2, 12);
        NetworkFaults {
            delay_ms_min: 1,
            delay_ms_max,
            loss_ppm: rng.range(0, 50_000) as u32,
            duplicate_ppm: rng.range(0, 30_000) as u32,
            corrupt_ppm: rng.range(0, 20_000) as u32,
        }
    }

    /// A crash: unsynced writes are lost, except a random prefix of them (torn writes:
    /// the disk got part of the way), and the clock may be stepped at the restart.
    pub(super) fn crash(&mut self, index: usize, now_ms: u64, restart_at_ms: Option<u64>) {
        if self.slots[index].node.take().is_none() {
            return;
        }
        let disk = &self.slots[index].disk;
        let (ndb_pending, sync_pending) = (disk.ndb_pending.len(), disk.sync_pending.len());
        let ndb_kept = self.rng.range(0, ndb_pending as u64) as usize;
        let sync_kept = self.rng.range(0, sync_pending as u64) as usize;
        let step_ms = self.draw_clock_step();
        let slot = &mut self.slots[index];
        slot.disk.ndb_make_durable(ndb_kept);
        slot.disk.sync_make_durable(sync_kept);
        slot.disk.ndb_pending.clear();
        slot.disk.sync_pending.clear();
        if step_ms != 0 {
            slot.clock_offset_ms += step_ms;
            self.clock_steps += 1;
        }
        let slot = &mut self.slots[index];
        slot.incarnation += 1;
        slot.restart_at_ms = restart_at_ms;
        slot.keep_down = restart_at_ms.is_none();
        self.crashes += 1;
        self.trace(&[4, now_ms, index as u64]);
    }

    /// A restarted node reads the wall clock again: on fault seeds, one restart in three
    /// finds it stepped, back by up to 3 s or forward by up to 10 minutes.
    fn draw_clock_step(&mut self) -> i64 {
        if !self.config.faults || !self.rng.chance_ppm(333_333) {
            return 0;
        }
        if self.rng.chance_ppm(500_000) {
            -(self.rng.range(1, 3_000) as i64)
        } else {
            self.rng.range(1, 600_000) as i64
        }
    }

    /// A failed fsync: the node stops at once (what reached the disk is unknown, so it
    /// may not go on as if the write had worked) before its batch's messages and events
    /// leave, and restarts a little later.
    pub(super) fn fail_stop(&mut self, index: usize, now_ms: u64) {
        self.fsync_errors += 1;
        let restart_at_ms = now_ms + self.rng.range(5, 150);
        self.crash(index, now_ms, Some(restart_at_ms));
    }

    pub(super) fn inject_faults(&mut self, now_ms: u64) {
        if self.heal_at_ms.is_some_and(|at| now_ms >= at) {
            self.network.heal_groups();
            self.heal_at_ms = None;
        }
        if self.cuts_heal_at_ms.is_some_and(|at| now_ms >= at) {
            self.network.heal_cuts();
            self.cuts_heal_at_ms = None;
        }
        if self.cuts_heal_at_ms.is_none() && self.rng.chance_ppm(3_000) {
            // Asymmetric: a few links stop carrying messages in one direction only.
            let nodes = self.slots.len() as u64;
            for _ in 0..self.rng.range(1, 4) {
                let from = NodeId(self.rng.range(0, nodes - 1) as u32);
                let to = NodeId(self.rng.range(0, nodes - 1) as u32);
                self.network.cut(from, to);
            }
            let until_ms = now_ms + self.rng.range(5, self.config.partition_ms_max * 2);
            self.cuts_heal_at_ms = Some(until_ms);
            self.trace(&[10, now_ms]);
            self.partitions += 1;
        }
        if self.rng.chance_ppm(5_000) {
            let index = self.rng.range(0, self.slots.len() as u64 - 1) as usize;
            let restart_at_ms = now_ms + self.rng.range(5, 150);
            self.crash(index, now_ms, Some(restart_at_ms));
            // One ndb crash in eight on a seed that has lost no disk yet loses its disk
            // (with three ndb nodes or more: a lone ndb's disk is the only copy).
            if self.slots[index].role == Role::Ndb
                && self.config.ndbs >= 3
                && self.ndb_wipes == 0
                && self.rng.chance_ppm(125_000)
            {
                self.slots[index].disk.wipe_ndb();
                self.ndb_wipes += 1;
                self.trace(&[11, now_ms, index as u64]);
            }
        }
        self.orphan_faults(now_ms);
        if self.heal_at_ms.is_none() && self.rng.chance_ppm(4_000) {
            let groups = (0..self.slots.len())
                .map(|_| self.rng.range(0, 1) as u8)
                .collect();
            self.network.partition(groups);
            self.heal_at_ms = Some(now_ms + self.rng.range(5, self.config.partition_ms_max));
            self.trace(&[5, now_ms]);
            self.partitions += 1;
        }
    }

    pub(super) fn begin_liveness(&mut self, now_ms: u64) {
        // Node faults end with the safety phase: a failed fsync now could take down a
        // majority with the minority kept down, and nothing could make progress.
        self.fsync_error_ppm = 0;
        self.network.heal();
        self.heal_at_ms = None;
        self.cuts_heal_at_ms = None;
        for index in 0..self.slots.len() {
            if self.slots[index].node.is_none() && !self.slots[index].keep_down {
                self.start_node(index, now_ms);
            }
        }
        if self.config.faults {
            // A lost ndb disk is the one ndb failure a seed may have: the wiped node may
            // still be fetching what it lost, so no other ndb is kept down.
            if self.ndb_wipes == 0 {
                self.crash_minority(Role::Ndb, self.config.ndbs, now_ms);
            }
            self.crash_minority(Role::Sync, self.config.syncs, now_ms);
        }
        for publisher in &mut self.publishers {
            publisher.quota = 2;
            publisher.next_at_ms = now_ms + self.rng.range(1, 50);
        }
    }

    pub(super) fn crash_minority(&mut self, role: Role, size: usize, now_ms: u64) {
        let down = self.rng.range(0, (size as u64).saturating_sub(1) / 2);
        let members: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.slots[*i].role == role)
            .collect();
        for _ in 0..down {
            let index = members[self.rng.range(0, members.len() as u64 - 1) as usize];
            self.crash(index, now_ms, None);
        }
    }

    pub(super) fn restart_due(&mut self, now_ms: u64) {
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if slot.node.is_none()
                && !slot.keep_down
                && slot.restart_at_ms.is_some_and(|at| now_ms >= at)
            {
                self.start_node(index, now_ms);
            }
        }
    }
}
