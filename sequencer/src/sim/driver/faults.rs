//! Faults: crashes and restarts, partitions, the heal before the liveness phase.

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

    pub(super) fn crash(&mut self, index: usize, now_ms: u64, restart_at_ms: Option<u64>) {
        let slot = &mut self.slots[index];
        if slot.node.take().is_none() {
            return;
        }
        slot.disk.ndb_pending.clear();
        slot.disk.sync_pending.clear();
        slot.incarnation += 1;
        slot.restart_at_ms = restart_at_ms;
        slot.keep_down = restart_at_ms.is_none();
        self.crashes += 1;
        self.trace(&[4, now_ms, index as u64]);
    }

    pub(super) fn inject_faults(&mut self, now_ms: u64) {
        if self.heal_at_ms.is_some_and(|at| now_ms >= at) {
            self.network.heal();
            self.heal_at_ms = None;
        }
        if self.rng.chance_ppm(5_000) {
            let index = self.rng.range(0, self.slots.len() as u64 - 1) as usize;
            let restart_at_ms = now_ms + self.rng.range(5, 150);
            self.crash(index, now_ms, Some(restart_at_ms));
        }
        if self.heal_at_ms.is_none() && self.rng.chance_ppm(4_000) {
            let groups = (0..self.slots.len())
                .map(|_| self.rng.range(0, 1) as u8)
                .collect();
            self.network.partition(groups);
            self.heal_at_ms = Some(now_ms + self.rng.range(5, 100));
            self.trace(&[5, now_ms]);
            self.partitions += 1;
        }
    }

    pub(super) fn begin_liveness(&mut self, now_ms: u64) {
        self.network.heal();
        self.heal_at_ms = None;
        for index in 0..self.slots.len() {
            if self.slots[index].node.is_none() && !self.slots[index].keep_down {
                self.start_node(index, now_ms);
            }
        }
        if self.config.faults {
            self.crash_minority(Role::Ndb, self.config.ndbs, now_ms);
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
