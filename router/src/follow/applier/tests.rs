//! The applier driven by hand-made logs: verdicts, parking and wakes, wills, entry
//! restarts, and two entries that must agree on everything they derive.

use std::cell::RefCell;
use std::collections::HashMap;

use super::*;
use crate::engine::record;
use crate::message::{KvWrite, MessageProperties};
use crate::realm::sync::key_value;

/// A realm's retained table and what it delivered, in order.
#[derive(Default)]
struct Table {
    retained: RefCell<HashMap<Topic, Payload>>,
    delivered: RefCell<Vec<(u64, String, Value)>>,
}

impl Keys for &Table {
    fn value(&self, topic: &Topic) -> Value {
        key_value(self.retained.borrow().get(topic))
    }

    fn deliver(&self, p: Publication, _: Option<SessionId>, options: &PublishOptions) {
        if options.retain {
            let mut retained = self.retained.borrow_mut();
            if p.payload.is_empty() {
                retained.remove(&p.topic);
            } else {
                retained.insert(p.topic.clone(), p.payload.clone());
            }
        }
        let value = key_value(Some(&p.payload));
        self.delivered
            .borrow_mut()
            .push((p.id, p.topic.to_wamp(), value));
    }
}

const INC: u64 = 1_000;

fn owner(node: u32, session: SessionId) -> Owner {
    Owner {
        node,
        incarnation: INC,
        session,
    }
}

fn payload(value: Option<&str>) -> Payload {
    Payload::Wamp {
        args: value.map(|v| vec![Value::from(v)]),
        kwargs: None,
    }
}

fn publication(key: &str, value: Option<&str>, publisher: SessionId) -> Publication {
    Publication {
        id: 0,
        topic: Topic::from_wamp(key),
        payload: payload(value),
        publisher,
        disclosed: None,
        qos: 0,
        retain: true,
        properties: MessageProperties::default(),
    }
}

fn retained() -> PublishOptions {
    PublishOptions {
        retain: true,
        ..PublishOptions::default()
    }
}

/// A conditional write record of `owner`: `when` (`Some(None)`: key absent).
fn conditional(
    key: &str,
    value: Option<&str>,
    owner: Owner,
    token: u64,
    when: Option<Option<&str>>,
    watch: bool,
    will: Option<Option<&str>>,
) -> Vec<u8> {
    let kv = Conditional {
        write: KvWrite {
            when: when.map(|w| w.map_or(Value::Null, Value::from)),
            watch,
            will: will.map(payload),
        },
        owner,
        token,
    };
    let p = publication(key, value, owner.session);
    record::encode_publish("realm1", &p, &retained(), Some(&kv))
}

fn plain(key: &str, value: Option<&str>, session: SessionId) -> Vec<u8> {
    record::encode_publish(
        "realm1",
        &publication(key, value, session),
        &retained(),
        None,
    )
}

/// One entry: its applier and its realm.
struct Entry {
    applier: Applier,
    table: Table,
}

impl Entry {
    fn new(node: u32) -> Self {
        Self {
            applier: Applier::new(node, INC),
            table: Table::default(),
        }
    }

    fn apply(&mut self, id: u64, publisher: SessionId, bytes: &[u8]) -> Vec<Action> {
        let record = record::decode(id, publisher, bytes).expect("a record");
        let table = &self.table;
        self.applier.apply(
            id,
            publisher,
            record,
            |name| (name == "realm1").then_some(table),
            0,
        )
    }

    fn value(&self, key: &str) -> Value {
        (&self.table).value(&Topic::from_wamp(key))
    }
}

fn resolved(actions: &[Action]) -> Vec<(u64, Result<u64, Refused>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Resolve { token, outcome } => Some((*token, *outcome)),
            _ => None,
        })
        .collect()
}

fn submitted(actions: Vec<Action>) -> Vec<Vec<u8>> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Submit { record, .. } => Some(record),
            _ => None,
        })
        .collect()
}

#[test]
fn a_mutex_is_granted_refused_parked_and_handed_over_by_a_wake() {
    let mut e = Entry::new(1);
    let a = owner(1, 10);
    let b = owner(1, 20);
    let out = e.apply(
        100,
        10,
        &conditional("lock", Some("a"), a, 1, Some(None), true, None),
    );
    assert_eq!(resolved(&out), vec![(1, Ok(100))]);
    let out = e.apply(
        101,
        20,
        &conditional("lock", Some("b"), b, 2, Some(None), false, None),
    );
    assert_eq!(resolved(&out), vec![(2, Err(Refused::NotAccepted))]);
    let out = e.apply(
        102,
        20,
        &conditional("lock", Some("b"), b, 3, Some(None), true, None),
    );
    assert!(out.is_empty(), "parked: no answer yet, no wake: {out:?}");
    // The holder releases: b's entry asks the log for b's wake.
    let out = e.apply(103, 10, &plain("lock", None, 10));
    let wakes = submitted(out);
    assert_eq!(wakes.len(), 1);
    assert_eq!(e.value("lock"), Value::Null);
    let out = e.apply(104, 20, &wakes[0]);
    assert_eq!(resolved(&out), vec![(3, Ok(104))]);
    assert_eq!(e.value("lock"), Value::from("b"));
    let ids: Vec<u64> = e.table.delivered.borrow().iter().map(|d| d.0).collect();
    assert_eq!(
        ids,
        vec![100, 103, 104],
        "refused and parked writes are not delivered"
    );
}

#[test]
fn a_key_waiting_for_its_parked_writers_wake_is_reserved_for_it() {
    let mut e = Entry::new(1);
    let (a, b, c) = (owner(1, 10), owner(1, 20), owner(1, 30));
    e.apply(
        1,
        10,
        &conditional("lock", Some("a"), a, 1, Some(None), true, None),
    );
    e.apply(
        2,
        20,
        &conditional("lock", Some("b"), b, 2, Some(None), true, None),
    );
    let wake = submitted(e.apply(3, 10, &plain("lock", None, 10)));
    // Between the release and b's wake, c must not take the lock first.
    let out = e.apply(
        4,
        30,
        &conditional("lock", Some("c"), c, 3, Some(None), false, None),
    );
    assert_eq!(resolved(&out), vec![(3, Err(Refused::NotAccepted))]);
    let out = e.apply(
        5,
        30,
        &conditional("lock", Some("c"), c, 4, Some(None), true, None),
    );
    assert!(resolved(&out).is_empty());
    let out = e.apply(6, 20, &wake[0]);
    assert_eq!(resolved(&out), vec![(2, Ok(6))]);
    assert_eq!(e.value("lock"), Value::from("b"));
    // b releases; c, parked behind it, is next.
    let wake = submitted(e.apply(7, 20, &plain("lock", None, 20)));
    assert_eq!(resolved(&e.apply(8, 30, &wake[0])), vec![(4, Ok(8))]);
    assert_eq!(e.value("lock"), Value::from("c"));
}

#[test]
fn two_entries_agree_and_only_the_writers_entry_answers_and_asks() {
    let mut one = Entry::new(1);
    let mut two = Entry::new(2);
    let a = owner(1, 10);
    let b = owner(2, 20);
    let log = [
        (
            1,
            10,
            conditional("lock", Some("a"), a, 1, Some(None), true, None),
        ),
        (
            2,
            20,
            conditional("lock", Some("b"), b, 1, Some(None), true, None),
        ),
        (3, 10, plain("lock", None, 10)),
    ];
    let mut wakes = Vec::new();
    for (id, publisher, bytes) in &log {
        let from_one = one.apply(*id, *publisher, bytes);
        let from_two = two.apply(*id, *publisher, bytes);
        if *id == 1 {
            assert_eq!(resolved(&from_one), vec![(1, Ok(1))]);
            assert!(
                from_two.is_empty(),
                "entry 2 does not answer entry 1's writer"
            );
        }
        assert!(submitted(from_one).is_empty(), "b is not entry 1's");
        wakes.extend(submitted(from_two));
    }
    assert_eq!(wakes.len(), 1, "entry 2 asks for its writer's wake");
    assert!(one.apply(4, 20, &wakes[0]).is_empty());
    assert_eq!(resolved(&two.apply(4, 20, &wakes[0])), vec![(1, Ok(4))]);
    assert_eq!(*one.table.delivered.borrow(), *two.table.delivered.borrow());
    assert_eq!(one.value("lock"), Value::from("b"));
}

#[test]
fn an_abnormal_end_writes_the_will_and_a_goodbye_forgets_it() {
    let mut e = Entry::new(1);
    let a = owner(1, 10);
    let b = owner(1, 20);
    e.apply(
        1,
        10,
        &conditional("k1", Some("a"), a, 1, None, false, Some(None)),
    );
    e.apply(
        2,
        20,
        &conditional("k2", Some("b"), b, 2, None, false, Some(Some("gone"))),
    );
    // a says GOODBYE: its will is dropped, nothing is written.
    let out = e.apply(3, 10, &record::encode_session_ended("realm1", &a, false));
    assert!(out.is_empty());
    // b's connection drops: its entry asks the log to write b's will.
    let wills = submitted(e.apply(4, 20, &record::encode_session_ended("realm1", &b, true)));
    assert_eq!(wills.len(), 1);
    assert!(e.apply(5, 0, &wills[0]).is_empty());
    assert_eq!(e.value("k1"), Value::from("a"));
    assert_eq!(e.value("k2"), Value::from("gone"));
    // The same will record again (asked twice) writes nothing more.
    e.apply(6, 0, &wills[0]);
    assert_eq!(e.table.delivered.borrow().len(), 3);
}

#[test]
fn a_later_write_cancels_the_will_even_while_it_is_being_written() {
    let mut e = Entry::new(1);
    let a = owner(1, 10);
    e.apply(
        1,
        10,
        &conditional("k", Some("a"), a, 1, None, false, Some(None)),
    );
    let wills = submitted(e.apply(2, 10, &record::encode_session_ended("realm1", &a, true)));
    e.apply(3, 30, &plain("k", Some("new"), 30));
    e.apply(4, 0, &wills[0]);
    assert_eq!(e.value("k"), Value::from("new"));
}

#[test]
fn a_restarted_entry_ends_its_earlier_sessions_on_every_entry() {
    let mut old_life = Entry::new(1);
    let mut other = Entry::new(2);
    let a = owner(1, 10);
    let b = owner(2, 20);
    let c = owner(1, 30);
    let log = [
        (
            1,
            10,
            conditional("lock", Some("a"), a, 1, Some(None), true, Some(None)),
        ),
        (
            2,
            20,
            conditional("lock", Some("b"), b, 1, Some(None), true, None),
        ),
        (
            3,
            30,
            conditional("other", Some("c"), c, 2, Some(Some("x")), true, None),
        ),
    ];
    for (id, publisher, bytes) in &log {
        old_life.apply(*id, *publisher, bytes);
        other.apply(*id, *publisher, bytes);
    }
    // Entry 1 restarts (kill -9): its new life replays the log, then announces itself.
    let mut new_life = Entry {
        applier: Applier::new(1, INC + 1),
        table: Table::default(),
    };
    for (id, publisher, bytes) in &log {
        assert!(submitted(new_life.apply(*id, *publisher, bytes)).is_empty());
    }
    let started = record::encode_entry_started(1, INC + 1);
    let wills = submitted(new_life.apply(4, 0, &started));
    assert_eq!(wills.len(), 1, "the new life writes the old life's will");
    assert!(submitted(other.apply(4, 0, &started)).is_empty());
    // The will frees the lock; entry 2's parked writer b is woken; c's write is gone.
    let wake = submitted(other.apply(5, 0, &wills[0]));
    new_life.apply(5, 0, &wills[0]);
    assert_eq!(wake.len(), 1);
    assert_eq!(resolved(&other.apply(6, 20, &wake[0])), vec![(1, Ok(6))]);
    new_life.apply(6, 20, &wake[0]);
    for e in [&new_life, &other] {
        assert_eq!(e.value("lock"), Value::from("b"));
        assert_eq!(e.value("other"), Value::Null);
    }
}

#[test]
fn a_lost_request_is_asked_again_after_a_while() {
    let mut e = Entry::new(1);
    let (a, b) = (owner(1, 10), owner(1, 20));
    e.apply(
        1,
        10,
        &conditional("lock", Some("a"), a, 1, Some(None), true, None),
    );
    e.apply(
        2,
        20,
        &conditional("lock", Some("b"), b, 2, Some(None), true, None),
    );
    assert_eq!(submitted(e.apply(3, 10, &plain("lock", None, 10))).len(), 1);
    let table = &e.table;
    let lookup = |name: &str| (name == "realm1").then_some(table);
    assert!(
        e.applier.tick(lookup, 1).is_empty(),
        "asked at 0, not yet again"
    );
    let again = submitted(e.applier.tick(lookup, ASK_AGAIN_MS + 1));
    assert_eq!(again.len(), 1, "the wake is asked again");
}

#[test]
fn a_wake_for_a_write_no_longer_first_does_nothing() {
    let mut e = Entry::new(1);
    let (a, b) = (owner(1, 10), owner(1, 20));
    e.apply(
        1,
        10,
        &conditional("lock", Some("a"), a, 1, Some(None), true, None),
    );
    e.apply(
        2,
        20,
        &conditional("lock", Some("b"), b, 2, Some(None), true, None),
    );
    let wake = submitted(e.apply(3, 10, &plain("lock", None, 10)));
    // Someone writes unconditionally before the wake: b's condition no longer holds.
    e.apply(4, 30, &plain("lock", Some("z"), 30));
    assert!(
        resolved(&e.apply(5, 20, &wake[0])).is_empty(),
        "b stays parked"
    );
    assert_eq!(e.value("lock"), Value::from("z"));
    // Its session ends: the parked write is answered and gone.
    let out = e.apply(6, 20, &record::encode_session_ended("realm1", &b, false));
    assert_eq!(resolved(&out), vec![(2, Err(Refused::SessionEnded))]);
}

/// The permanent ID of the `seq`th record voted `t_ms` after the ID epoch.
fn at(t_ms: u64, seq: u64) -> u64 {
    (t_ms << fox_sequencer::PermanentId::TIME_SHIFT_BITS) + seq
}

fn owner_of(node: u32, incarnation: u64, session: SessionId) -> Owner {
    Owner {
        node,
        incarnation,
        session,
    }
}

#[test]
fn an_entry_whose_beats_stop_loses_its_lease_and_the_lowest_live_entry_writes_its_wills() {
    let mut two = Entry::new(2);
    let mut three = Entry::new(3);
    let a = owner(1, 10);
    let b = owner(3, 30);
    let mut log = vec![
        (at(0, 1), 0, record::encode_entry_started(1, INC)),
        (at(0, 2), 0, record::encode_entry_started(2, INC)),
        (at(0, 3), 0, record::encode_entry_started(3, INC)),
        (
            at(10, 0),
            10,
            conditional("lock", Some("a"), a, 1, Some(None), true, Some(None)),
        ),
        (
            at(20, 0),
            30,
            conditional("lock", Some("b"), b, 2, Some(None), true, None),
        ),
    ];
    // Entries 2 and 3 beat every 300 ms; entry 1 (the holder's) is dead after its start.
    for k in 1..=6 {
        log.push((at(300 * k, 0), 0, record::encode_beat(2, INC)));
        log.push((at(300 * k, 1), 0, record::encode_beat(3, INC)));
    }
    let mut wills = Vec::new();
    for (id, publisher, bytes) in &log {
        wills.extend(submitted(two.apply(*id, *publisher, bytes)));
        let from_three = three.apply(*id, *publisher, bytes);
        assert!(
            submitted(from_three).is_empty(),
            "entry 3 is not the lowest live entry"
        );
        if log_time_ms(*id) - fox_sequencer::PermanentId::EPOCH_UNIX_MS <= LEASE_MS {
            assert!(wills.is_empty(), "no expiry within the lease");
        }
    }
    assert_eq!(wills.len(), 1, "entry 2 writes the dead holder's will once");
    let will = at(1_900, 0);
    assert!(submitted(two.apply(will, 0, &wills[0])).is_empty());
    let wake = submitted(three.apply(will, 0, &wills[0]));
    assert_eq!(wake.len(), 1, "entry 3 asks for its parked writer's wake");
    let woken = at(1_901, 0);
    two.apply(woken, 30, &wake[0]);
    assert_eq!(
        resolved(&three.apply(woken, 30, &wake[0])),
        vec![(2, Ok(woken))]
    );
    assert_eq!(two.value("lock"), Value::from("b"));
    assert_eq!(
        *two.table.delivered.borrow(),
        *three.table.delivered.borrow()
    );
}

#[test]
fn beats_keep_a_lease_and_its_sessions_keys() {
    let mut two = Entry::new(2);
    let a = owner(1, 10);
    two.apply(at(0, 0), 0, &record::encode_entry_started(1, INC));
    two.apply(
        at(5, 0),
        10,
        &conditional("k", Some("a"), a, 1, None, false, Some(None)),
    );
    for k in 1..=10 {
        let out = two.apply(at(300 * k, 0), 0, &record::encode_beat(1, INC));
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(two.value("k"), Value::from("a"));
}

#[test]
fn an_entry_that_sees_its_own_lease_expire_is_fenced_and_its_old_writes_are_refused() {
    let mut one = Entry::new(1);
    let mut two = Entry::new(2);
    let mut log = vec![
        (at(0, 0), 0, record::encode_entry_started(1, INC)),
        (at(0, 1), 0, record::encode_entry_started(2, INC)),
        (
            at(5, 0),
            10,
            conditional("k", Some("a"), owner(1, 10), 1, None, false, Some(None)),
        ),
    ];
    // Entry 2 beats on; entry 1's beats are not ordered (it is cut off).
    for k in 1..=6 {
        log.push((at(300 * k, 0), 0, record::encode_beat(2, INC)));
    }
    let mut fenced = Vec::new();
    for (id, publisher, bytes) in &log {
        fenced.extend(one.apply(*id, *publisher, bytes));
        two.apply(*id, *publisher, bytes);
    }
    assert!(fenced.contains(&Action::Fenced), "{fenced:?}");
    // A write of the fenced life that the cluster orders after the expiry is refused on
    // every entry (here entry 1 already answers by its new life, so only its verdict's
    // absence and the value show it).
    let late = conditional("k2", Some("late"), owner(1, 10), 2, None, false, None);
    one.applier.set_incarnation(INC + 7);
    assert!(resolved(&one.apply(at(1_801, 0), 10, &late)).is_empty());
    two.apply(at(1_801, 0), 10, &late);
    assert_eq!(two.value("k2"), Value::Null);
    // The new life's writes go through.
    let fresh = conditional(
        "k2",
        Some("new"),
        owner_of(1, INC + 7, 11),
        3,
        None,
        false,
        None,
    );
    one.apply(at(1_802, 0), 0, &record::encode_entry_started(1, INC + 7));
    assert_eq!(
        resolved(&one.apply(at(1_803, 0), 11, &fresh)),
        vec![(3, Ok(at(1_803, 0)))]
    );
    assert_eq!(one.value("k2"), Value::from("new"));
}

/// Entries 1-3 (entry `n` of lease rule `rules[n - 1]`) start and beat every 300 ms until
/// 900 ms; then nothing is decided for 5 s (a whole tier stalled); then entries
/// `after` beat on every 300 ms until 7,400 ms. The leases lost, as entries 1 and 2 both see
/// them (they must agree).
fn losses_over_a_stall(rules: [u64; 3], after: &[u32]) -> Vec<Action> {
    let mut one = Entry::new(1);
    let mut two = Entry::new(2);
    let mut log = Vec::new();
    for node in 1..=3u32 {
        let rule = rules[node as usize - 1];
        let start = record::encode_entry_record_of_rule("start", node, INC, rule);
        log.push((at(0, u64::from(node)), start));
    }
    let beat = |node: u32, t: u64| {
        let rule = rules[node as usize - 1];
        let bytes = record::encode_entry_record_of_rule("beat", node, INC, rule);
        (at(t, u64::from(node)), bytes)
    };
    for t in [300, 600, 900] {
        log.extend((1..=3).map(|node| beat(node, t)));
    }
    for t in (5_900..=7_400).step_by(300) {
        log.extend(after.iter().map(|&node| beat(node, t)));
    }
    let mut lost = Vec::new();
    for (id, bytes) in &log {
        let seen = membership(&one.apply(*id, 0, bytes));
        assert_eq!(seen, membership(&two.apply(*id, 0, bytes)), "at {id}");
        lost.extend(seen.into_iter().filter(|a| {
            matches!(
                a,
                Action::Member {
                    change: Change::Lost,
                    ..
                }
            )
        }));
    }
    assert_eq!(one.applier.digest(), two.applier.digest());
    lost
}

#[test]
fn a_log_that_stalls_for_everyone_expires_no_lease() {
    let rule = LEASE_RULE;
    assert_eq!(losses_over_a_stall([rule; 3], &[1, 2, 3]), vec![]);
}

#[test]
fn under_lease_rule_1_or_with_one_entry_of_it_a_stall_expires_every_other_lease() {
    // The first record after the stall (entry 1's beat) expires entries 2 and 3: rule 1, as
    // binaries before rule 2 decide, and so every entry while one of them lives.
    let expected = vec![
        member(2, Change::Lost, at(5_900, 1)),
        member(3, Change::Lost, at(5_900, 1)),
    ];
    assert_eq!(losses_over_a_stall([1; 3], &[1, 2, 3]), expected);
    let mixed = [LEASE_RULE, LEASE_RULE, 1];
    assert_eq!(losses_over_a_stall(mixed, &[1, 2, 3]), expected);
}

#[test]
fn an_entry_that_died_in_a_stall_lapses_a_lease_time_of_the_others_beats_after_it() {
    // Entry 3 beat last at 900 ms. Of the 5 s stall, STALL_GAP_MS counts: its lease lapses
    // at the first record more than LEASE_MS - STALL_GAP_MS after the stall (6,900 ms), the
    // beat at 7,100 ms.
    assert_eq!(STALL_GAP_MS, 500);
    let rule = LEASE_RULE;
    assert_eq!(
        losses_over_a_stall([rule; 3], &[1, 2]),
        vec![member(3, Change::Lost, at(7_100, 1))]
    );
}

/// The membership actions (joins, leaves, losses, coordinators) among `actions`.
fn membership(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Member { .. } | Action::Coordinator { .. }))
        .cloned()
        .collect()
}

fn member(node: u32, change: Change, at: u64) -> Action {
    Action::Member {
        node,
        incarnation: INC,
        change,
        at,
    }
}

#[test]
fn every_entry_sees_the_same_joins_losses_and_coordinators_at_the_same_records() {
    let mut two = Entry::new(2);
    let mut three = Entry::new(3);
    let mut log = vec![
        (at(0, 1), 0, record::encode_entry_started(3, INC)),
        (at(0, 2), 0, record::encode_entry_started(1, INC)),
        (at(0, 3), 0, record::encode_entry_started(2, INC)),
    ];
    for k in 1..=6 {
        log.push((at(300 * k, 0), 0, record::encode_beat(2, INC)));
        log.push((at(300 * k, 1), 0, record::encode_beat(3, INC)));
    }
    let (mut seen_two, mut seen_three) = (Vec::new(), Vec::new());
    for (id, publisher, bytes) in &log {
        seen_two.extend(membership(&two.apply(*id, *publisher, bytes)));
        seen_three.extend(membership(&three.apply(*id, *publisher, bytes)));
    }
    assert_eq!(seen_two, seen_three, "the same log, the same membership");
    // Entry 1's last beat was its start at 0 ms: the first record after 1,500 ms of log
    // time (entry 2's beat at 1,800 ms) expires its lease, and names entry 2.
    let expiry = at(1_800, 0);
    assert_eq!(
        seen_two,
        vec![
            member(3, Change::Joined, at(0, 1)),
            Action::Coordinator {
                node: Some(3),
                at: at(0, 1)
            },
            member(1, Change::Joined, at(0, 2)),
            Action::Coordinator {
                node: Some(1),
                at: at(0, 2)
            },
            member(2, Change::Joined, at(0, 3)),
            member(1, Change::Lost, expiry),
            Action::Coordinator {
                node: Some(2),
                at: expiry
            },
        ]
    );
}

#[test]
fn the_coordinator_is_the_lowest_rank_then_the_lowest_id() {
    let ranks = HashMap::from([(1, 5), (2, 1), (3, 1)]);
    let mut one = Entry::new(1);
    one.applier = Applier::new(1, INC).with_ranks(ranks);
    let mut coordinators = Vec::new();
    for (seq, node) in [1, 3, 2].into_iter().enumerate() {
        let id = at(0, seq as u64);
        for action in membership(&one.apply(id, 0, &record::encode_entry_started(node, INC))) {
            if let Action::Coordinator { node, .. } = action {
                coordinators.push(node);
            }
        }
    }
    assert_eq!(coordinators, vec![Some(1), Some(3), Some(2)]);
    let left = membership(&one.apply(at(10, 0), 0, &record::encode_entry_left(2, INC)));
    assert_eq!(
        left,
        vec![
            member(2, Change::Left, at(10, 0)),
            Action::Coordinator {
                node: Some(3),
                at: at(10, 0)
            }
        ]
    );
}

#[test]
fn a_clean_leave_ends_the_entrys_sessions_at_once_and_another_entry_writes_their_wills() {
    let mut one = Entry::new(1);
    let mut two = Entry::new(2);
    let a = owner(1, 10);
    let log = [
        (at(0, 0), 0, record::encode_entry_started(1, INC)),
        (at(0, 1), 0, record::encode_entry_started(2, INC)),
        (
            at(5, 0),
            10,
            conditional("lock", Some("a"), a, 1, Some(None), true, Some(None)),
        ),
    ];
    for (id, publisher, bytes) in &log {
        one.apply(*id, *publisher, bytes);
        two.apply(*id, *publisher, bytes);
    }
    let leave = record::encode_entry_left(1, INC);
    let on_one = one.apply(at(100, 0), 0, &leave);
    assert!(!on_one.contains(&Action::Fenced), "a leave is not a fence");
    assert!(
        submitted(on_one).is_empty(),
        "the leaving entry writes no will"
    );
    let wills = submitted(two.apply(at(100, 0), 0, &leave));
    assert_eq!(
        wills.len(),
        1,
        "entry 2 writes the will well before a lease would lapse"
    );
    for entry in [&mut one, &mut two] {
        entry.apply(at(101, 0), 0, &wills[0]);
        assert_eq!(entry.value("lock"), Value::Null);
    }
    // A beat of the life that left comes too late: it does not join again.
    let late = two.apply(at(400, 0), 0, &record::encode_beat(1, INC));
    assert!(membership(&late).is_empty(), "{late:?}");
}

fn testament(owner: Owner, index: u32, topic: &str, value: &str, fired: bool) -> Vec<u8> {
    let mut p = publication(topic, Some(value), owner.session);
    p.retain = false;
    let options = PublishOptions::default();
    record::encode_testament("realm1", &p, &options, (&owner, index), fired)
}

fn delivered(entry: &Entry) -> Vec<String> {
    entry
        .table
        .delivered
        .borrow()
        .iter()
        .map(|(_, topic, _)| topic.clone())
        .collect()
}

#[test]
fn a_testament_its_entry_publishes_is_delivered_once_and_the_end_does_not_repeat_it() {
    let mut two = Entry::new(2);
    let a = owner(1, 10);
    two.apply(at(0, 0), 0, &record::encode_entry_started(1, INC));
    two.apply(at(0, 1), 0, &record::encode_entry_started(2, INC));
    two.apply(at(1, 0), 10, &testament(a, 0, "gone.a", "bye", false));
    assert!(delivered(&two).is_empty(), "held until the session ends");
    // Entry 1 publishes it as the session leaves, then logs the end.
    two.apply(at(2, 0), 10, &testament(a, 0, "gone.a", "bye", true));
    let out = two.apply(
        at(3, 0),
        10,
        &record::encode_session_ended("realm1", &a, false),
    );
    assert!(submitted(out).is_empty(), "nothing left to publish");
    // A second copy (another entry's, say) is not delivered again.
    two.apply(at(4, 0), 0, &testament(a, 0, "gone.a", "bye", true));
    assert_eq!(delivered(&two), vec!["gone.a".to_owned()]);
}

#[test]
fn the_testaments_of_a_dead_entrys_session_are_published_by_the_lowest_live_entry() {
    let mut two = Entry::new(2);
    let mut three = Entry::new(3);
    let a = owner(1, 10);
    let mut log = vec![
        (at(0, 0), 0, record::encode_entry_started(1, INC)),
        (at(0, 1), 0, record::encode_entry_started(2, INC)),
        (at(0, 2), 0, record::encode_entry_started(3, INC)),
        (at(1, 0), 10, testament(a, 0, "gone.a", "bye", false)),
        (at(1, 1), 10, testament(a, 1, "gone.b", "bye", false)),
    ];
    for k in 1..=6 {
        log.push((at(300 * k, 0), 0, record::encode_beat(2, INC)));
        log.push((at(300 * k, 1), 0, record::encode_beat(3, INC)));
    }
    let mut fires = Vec::new();
    for (id, publisher, bytes) in &log {
        fires.extend(submitted(two.apply(*id, *publisher, bytes)));
        assert!(submitted(three.apply(*id, *publisher, bytes)).is_empty());
    }
    assert_eq!(fires.len(), 2, "entry 2 publishes both testaments once");
    for (n, fire) in fires.iter().chain(fires.iter()).enumerate() {
        let id = at(2_000, n as u64);
        two.apply(id, 0, fire);
        three.apply(id, 0, fire);
    }
    assert_eq!(
        delivered(&two),
        vec!["gone.a".to_owned(), "gone.b".to_owned()]
    );
    assert_eq!(
        *two.table.delivered.borrow(),
        *three.table.delivered.borrow()
    );
}

#[test]
fn flushed_testaments_are_not_published_and_a_late_one_of_a_gone_session_is() {
    let mut two = Entry::new(2);
    let a = owner(2, 10);
    two.apply(at(0, 0), 0, &record::encode_entry_started(2, INC));
    two.apply(at(1, 0), 10, &testament(a, 0, "gone.a", "bye", false));
    two.apply(
        at(2, 0),
        10,
        &record::encode_testaments_flushed("realm1", &a),
    );
    let out = two.apply(
        at(3, 0),
        10,
        &record::encode_session_ended("realm1", &a, true),
    );
    assert!(submitted(out).is_empty(), "flushed: nothing to publish");
    // A testament ordered after its session's entry restarted is published at once.
    two.apply(at(4, 0), 0, &record::encode_entry_started(2, INC + 1));
    let fires = submitted(two.apply(at(5, 0), 10, &testament(a, 1, "late", "bye", false)));
    assert_eq!(fires.len(), 1);
    two.apply(at(6, 0), 0, &fires[0]);
    assert_eq!(delivered(&two), vec!["late".to_owned()]);
}

fn mqtt_actions(actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .filter(|a| matches!(a, Action::MqttTakeOver { .. } | Action::MqttResume { .. }))
        .collect()
}

fn resume(client: &str, claimer: Owner, body: Option<&[u8]>) -> Action {
    Action::MqttResume {
        realm: "realm1".into(),
        client: client.into(),
        claimer,
        body: body.map(<[u8]>::to_vec),
    }
}

#[test]
fn a_claimed_mqtt_session_is_handed_over_by_its_entry_and_resumed_by_the_claimer() {
    let mut one = Entry::new(1);
    let mut two = Entry::new(2);
    let served = owner(1, 10);
    let claimer = owner(2, 20);
    let log = [
        (
            1,
            10,
            record::encode_mqtt_session("realm1", "dev", &served, Some(b"s1"), false),
        ),
        (
            2,
            10,
            record::encode_mqtt_session("realm1", "dev", &served, Some(b"s2"), false),
        ),
        (3, 20, record::encode_mqtt_claim("realm1", "dev", &claimer)),
    ];
    for (id, publisher, bytes) in &log[..2] {
        assert!(mqtt_actions(one.apply(*id, *publisher, bytes)).is_empty());
        assert!(mqtt_actions(two.apply(*id, *publisher, bytes)).is_empty());
    }
    let (id, publisher, claim) = &log[2];
    assert_eq!(
        mqtt_actions(one.apply(*id, *publisher, claim)),
        vec![Action::MqttTakeOver {
            realm: "realm1".into(),
            client: "dev".into(),
            claimer,
        }],
        "the serving entry hands over"
    );
    assert!(
        mqtt_actions(two.apply(*id, *publisher, claim)).is_empty(),
        "the claimer waits for the handover"
    );
    // A late progress write of the old owner is ignored; its handover is the answer.
    let late = record::encode_mqtt_session("realm1", "dev", &owner(1, 10), Some(b"late"), false);
    let handover = record::encode_mqtt_session("realm1", "dev", &owner(1, 0), Some(b"last"), true);
    for entry in [&mut one, &mut two] {
        assert!(mqtt_actions(entry.apply(4, 10, &late)).is_empty());
    }
    assert!(mqtt_actions(one.apply(5, 0, &handover)).is_empty());
    assert_eq!(
        mqtt_actions(two.apply(5, 0, &handover)),
        vec![resume("dev", claimer, Some(b"last"))]
    );
    // The claimer serves it now: its writes count, a handover nobody waits for does not.
    let mine = record::encode_mqtt_session("realm1", "dev", &claimer, Some(b"s3"), false);
    for entry in [&mut one, &mut two] {
        assert!(mqtt_actions(entry.apply(6, 20, &mine)).is_empty());
        assert!(mqtt_actions(entry.apply(7, 0, &handover)).is_empty());
        assert_eq!(entry.applier.mqtt_sessions(), 1);
    }
    let ended = record::encode_mqtt_session("realm1", "dev", &claimer, None, false);
    for entry in [&mut one, &mut two] {
        entry.apply(8, 20, &ended);
        assert_eq!(
            entry.applier.mqtt_sessions(),
            0,
            "an ended session is forgotten"
        );
    }
}

#[test]
fn a_claim_of_a_session_whose_entry_died_resumes_from_its_last_record_when_the_lease_lapses() {
    let mut two = Entry::new(2);
    let served = owner(1, 10);
    let claimer = owner(2, 20);
    let mut log = vec![
        (at(0, 1), 0, record::encode_entry_started(1, INC)),
        (at(0, 2), 0, record::encode_entry_started(2, INC)),
        (
            at(5, 0),
            10,
            record::encode_mqtt_session("realm1", "dev", &served, Some(b"kept"), false),
        ),
        (
            at(10, 0),
            20,
            record::encode_mqtt_claim("realm1", "dev", &claimer),
        ),
    ];
    for k in 1..=6 {
        log.push((at(300 * k, 0), 0, record::encode_beat(2, INC)));
    }
    let mut answers = Vec::new();
    for (id, publisher, bytes) in &log {
        let before = log_time_ms(*id) - fox_sequencer::PermanentId::EPOCH_UNIX_MS <= LEASE_MS;
        let got = mqtt_actions(two.apply(*id, *publisher, bytes));
        if before {
            assert!(
                got.is_empty(),
                "entry 1 may still hand over within its lease"
            );
        }
        answers.extend(got);
    }
    assert_eq!(answers, vec![resume("dev", claimer, Some(b"kept"))]);
}

#[test]
fn a_claim_nobody_hands_over_is_answered_after_the_wait_and_an_unknown_client_at_once() {
    let mut two = Entry::new(2);
    let served = owner(1, 10);
    let claimer = owner(2, 20);
    two.apply(
        1,
        10,
        &record::encode_mqtt_session("realm1", "dev", &served, Some(b"kept"), false),
    );
    two.apply(2, 20, &record::encode_mqtt_claim("realm1", "dev", &claimer));
    let table = &two.table;
    let realm = |name: &str| (name == "realm1").then_some(table);
    assert!(mqtt_actions(two.applier.tick(realm, sessions::CLAIM_WAIT_MS - 1)).is_empty());
    assert_eq!(
        mqtt_actions(two.applier.tick(realm, sessions::CLAIM_WAIT_MS)),
        vec![resume("dev", claimer, Some(b"kept"))]
    );
    assert!(mqtt_actions(two.applier.tick(realm, 2 * sessions::CLAIM_WAIT_MS)).is_empty());
    let fresh = owner(2, 21);
    assert_eq!(
        mqtt_actions(two.apply(3, 21, &record::encode_mqtt_claim("realm1", "new", &fresh))),
        vec![resume("new", fresh, None)]
    );
}

#[test]
fn a_write_of_an_entry_that_never_served_the_session_takes_it_over() {
    let mut one = Entry::new(1);
    let first = owner(1, 10);
    let second = owner(3, 30);
    one.apply(
        1,
        10,
        &record::encode_mqtt_session("realm1", "dev", &first, Some(b"a"), false),
    );
    assert_eq!(
        mqtt_actions(one.apply(
            2,
            30,
            &record::encode_mqtt_session("realm1", "dev", &second, Some(b"b"), false)
        )),
        vec![Action::MqttTakeOver {
            realm: "realm1".into(),
            client: "dev".into(),
            claimer: second,
        }],
        "entry 1 ends its copy"
    );
    // Entry 1's late writes no longer count; a claim now resumes entry 3's state.
    one.apply(
        3,
        10,
        &record::encode_mqtt_session("realm1", "dev", &first, Some(b"late"), false),
    );
    let again = owner(1, 11);
    one.apply(
        4,
        11,
        &record::encode_mqtt_session("realm1", "dev", &second, Some(b"c"), false),
    );
    let actions =
        mqtt_actions(one.apply(5, 11, &record::encode_mqtt_claim("realm1", "dev", &again)));
    assert!(actions.is_empty(), "entry 3 is alive: it hands over first");
    let handover = record::encode_mqtt_session("realm1", "dev", &second, Some(b"d"), true);
    assert_eq!(
        mqtt_actions(one.apply(6, 0, &handover)),
        vec![resume("dev", again, Some(b"d"))]
    );
    one.apply(
        7,
        11,
        &record::encode_mqtt_session("realm1", "dev", &again, None, false),
    );
    assert_eq!(
        one.applier.mqtt_sessions(),
        0,
        "entry 1 serves it again: its end counts"
    );
}

/// Every entry derives the same state from the same log, whoever it is and whatever its
/// clock does: random logs of every record kind (conditional writes with `when` / `watch` /
/// `will`, plain writes, session ends, testaments, entries starting, beating, leaving and
/// lapsing, MQTT session states, claims and handovers) applied by three entries, with
/// ticks at random times on one of them, give the same digest after every record and the
/// same retained values and deliveries at the end.
mod same_state_everywhere {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Write {
            key: u8,
            value: Option<u8>,
            node: u32,
            session: u64,
            when: Option<Option<u8>>,
            watch: bool,
            will: bool,
        },
        Plain(u8, Option<u8>),
        End(u32, u64, bool),
        Testament(u32, u64, u32, bool),
        Flush(u32, u64),
        Start(u32),
        /// A beat; `true`: as a binary of lease rule 1 writes it.
        Beat(u32, bool),
        Leave(u32),
        MqttState(u8, u32, Option<u8>, bool),
        MqttClaim(u8, u32),
        /// Log time passes (ms): leases lapse.
        Pause(u64),
        /// Entry 3 ticks (its own clock).
        Tick(u64),
        /// Entry 2 restarts from a snapshot of its applier (its realm's table is kept, as
        /// the router's snapshot keeps it).
        Restore,
    }

    fn op() -> impl Strategy<Value = Op> {
        let node = 1u32..=3;
        let session = 1u64..=3;
        prop_oneof![
            6 => (0u8..3, proptest::option::of(0u8..3), node.clone(), session.clone(),
                  proptest::option::of(proptest::option::of(0u8..3)), any::<bool>(), any::<bool>())
                .prop_map(|(key, value, node, session, when, watch, will)| Op::Write {
                    key, value, node, session, when, watch, will,
                }),
            2 => (0u8..3, proptest::option::of(0u8..3)).prop_map(|(k, v)| Op::Plain(k, v)),
            2 => (node.clone(), session.clone(), any::<bool>()).prop_map(|(n, s, a)| Op::End(n, s, a)),
            2 => (node.clone(), session.clone(), 0u32..2, any::<bool>())
                .prop_map(|(n, s, i, f)| Op::Testament(n, s, i, f)),
            1 => (node.clone(), session.clone()).prop_map(|(n, s)| Op::Flush(n, s)),
            1 => node.clone().prop_map(Op::Start),
            6 => (node.clone(), proptest::bool::weighted(0.2)).prop_map(|(n, old)| Op::Beat(n, old)),
            1 => node.clone().prop_map(Op::Leave),
            4 => (0u8..3, node.clone(), proptest::option::of(0u8..3), any::<bool>())
                .prop_map(|(c, n, b, h)| Op::MqttState(c, n, b, h)),
            2 => (0u8..3, node.clone()).prop_map(|(c, n)| Op::MqttClaim(c, n)),
            3 => (1u64..2_500).prop_map(Op::Pause),
            2 => (0u64..10_000).prop_map(Op::Tick),
            1 => Just(Op::Restore),
        ]
    }

    /// The record of `op`, with the lives each entry is in (starts move them on).
    fn record_of(op: &Op, lives: &HashMap<u32, u64>) -> Option<(SessionId, Vec<u8>)> {
        let life = |node: u32, session: u64| owner_of(node, lives[&node], session);
        let name = |v: u8| format!("v{v}");
        Some(match op.clone() {
            Op::Write {
                key,
                value,
                node,
                session,
                when,
                watch,
                will,
            } => {
                let o = life(node, session);
                let value = value.map(name);
                let when = when.map(|w| w.map(name));
                let bytes = conditional(
                    &format!("k{key}"),
                    value.as_deref(),
                    o,
                    session,
                    when.as_ref().map(|w| w.as_deref()),
                    watch,
                    will.then_some(None),
                );
                (session, bytes)
            }
            Op::Plain(key, value) => (9, plain(&format!("k{key}"), value.map(name).as_deref(), 9)),
            Op::End(node, session, abnormal) => (
                session,
                record::encode_session_ended("realm1", &life(node, session), abnormal),
            ),
            Op::Testament(node, session, index, fired) => {
                let p = publication("t.gone", Some("gone"), session);
                let o = life(node, session);
                let bytes = record::encode_testament(
                    "realm1",
                    &p,
                    &PublishOptions::default(),
                    (&o, index),
                    fired,
                );
                (session, bytes)
            }
            Op::Flush(node, session) => (
                session,
                record::encode_testaments_flushed("realm1", &life(node, session)),
            ),
            Op::Start(node) => (0, record::encode_entry_started(node, lives[&node])),
            Op::Beat(node, false) => (0, record::encode_beat(node, lives[&node])),
            Op::Beat(node, true) => (
                0,
                record::encode_entry_record_of_rule("beat", node, lives[&node], 1),
            ),
            Op::Leave(node) => (0, record::encode_entry_left(node, lives[&node])),
            Op::MqttState(client, node, body, handover) => {
                let body = body.map(|b| vec![b]);
                let bytes = record::encode_mqtt_session(
                    "realm1",
                    &format!("c{client}"),
                    &life(node, 7),
                    body.as_deref(),
                    handover,
                );
                (7, bytes)
            }
            Op::MqttClaim(client, node) => (
                8,
                record::encode_mqtt_claim("realm1", &format!("c{client}"), &life(node, 8)),
            ),
            Op::Pause(_) | Op::Tick(_) | Op::Restore => return None,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn three_entries_derive_the_same_state(ops in proptest::collection::vec(op(), 1..120)) {
            let mut entries = [Entry::new(1), Entry::new(2), Entry::new(3)];
            let mut lives: HashMap<u32, u64> = (1..=3).map(|n| (n, INC)).collect();
            let (mut t_ms, mut seq) = (0u64, 0u64);
            for op in &ops {
                match op {
                    Op::Pause(ms) => {
                        t_ms += ms;
                        continue;
                    }
                    Op::Tick(now) => {
                        let [_, _, three] = &mut entries;
                        let table = &three.table;
                        three.applier.tick(|n: &str| (n == "realm1").then_some(table), *now);
                        continue;
                    }
                    Op::Restore => {
                        let two = &mut entries[1];
                        let before = two.applier.digest_lines();
                        let bytes = two.applier.snapshot();
                        two.applier = Applier::restore(2, INC, &bytes).expect("a snapshot reads back");
                        prop_assert_eq!(before, two.applier.digest_lines());
                        continue;
                    }
                    Op::Start(node) => *lives.get_mut(node).unwrap() += 1,
                    _ => {}
                }
                let Some((publisher, bytes)) = record_of(op, &lives) else {
                    continue;
                };
                seq += 1;
                let id = at(t_ms, seq);
                for entry in entries.iter_mut() {
                    entry.apply(id, publisher, &bytes);
                }
                let digests: Vec<u64> = entries.iter().map(|e| e.applier.digest()).collect();
                if let Some(other) = digests.iter().position(|d| *d != digests[0]) {
                    let (a, b) = (entries[0].applier.digest_lines(), entries[other].applier.digest_lines());
                    let only_a: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
                    let only_b: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
                    prop_assert!(false, "derived states differ after {:?}: entry 1 has {:?}, entry {} has {:?}",
                        op, only_a, other + 1, only_b);
                }
            }
            let delivered: Vec<_> = entries.iter().map(|e| e.table.delivered.borrow().clone()).collect();
            prop_assert_eq!(&delivered[0], &delivered[1]);
            prop_assert_eq!(&delivered[0], &delivered[2]);
            for key in ["k0", "k1", "k2"] {
                prop_assert_eq!(entries[0].value(key), entries[2].value(key));
            }
        }
    }

    /// The digest sees a difference: two entries that applied different logs differ.
    #[test]
    fn the_digest_tells_different_states_apart() {
        let mut one = Entry::new(1);
        let mut two = Entry::new(2);
        let record = record::encode_mqtt_session("realm1", "c", &owner(1, 7), Some(b"x"), false);
        one.apply(1, 7, &record);
        assert_ne!(one.applier.digest(), two.applier.digest());
        two.apply(1, 7, &record);
        assert_eq!(one.applier.digest(), two.applier.digest());
    }
}
