use super::*;

const EPOCH: u64 = PermanentId::EPOCH_UNIX_MS;

#[test]
fn ids_follow_the_clock_and_never_repeat() {
    let s = LocalSequencer::default();
    let a = s.next(EPOCH + 1000);
    assert_eq!(a, 1000 << 12);
    assert_eq!(s.next(EPOCH + 1000), a + 1);
    assert_eq!(
        s.next(EPOCH + 999),
        a + 2,
        "a clock going back does not move IDs back"
    );
    assert_eq!(s.next(EPOCH + 2000), 2000 << 12);
}

#[test]
fn a_store_written_with_the_unix_epoch_floor_goes_on_increasing() {
    let now_ms = 1_796_000_000_000; // 2026
    let old_floor_id = now_ms << 12;
    let s = LocalSequencer::resume_after(old_floor_id);
    assert_eq!(s.next(now_ms), old_floor_id + 1);
    assert_eq!(s.next(now_ms + 10), old_floor_id + 2);
}

#[test]
fn ids_still_read_as_time_in_2089() {
    let year_2089_ms = 3_755_376_000_000; // 2089-01-01T00:00:00Z
    let id = LocalSequencer::default().next(year_2089_ms);
    assert_eq!(id, (year_2089_ms - EPOCH) << 12);
    assert!(id < PERMANENT_ID_MAX);
}

#[test]
fn resume_continues_after_the_stored_id() {
    let s = LocalSequencer::resume_after(5000 << 12);
    assert_eq!(s.next(EPOCH + 1), (5000 << 12) + 1);
}

/// A realm as the engine sees it: its retained table and what it delivered.
#[derive(Default)]
struct Table {
    order: std::sync::Mutex<()>,
    retained: std::sync::Mutex<HashMap<Topic, Publication>>,
    delivered: std::sync::Mutex<Vec<(u64, Option<SessionId>, Value)>>,
}

impl Target for Table {
    fn name(&self) -> &str {
        "realm1"
    }
    fn order(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.order)
    }
    fn value(&self, topic: &Topic) -> Value {
        crate::realm::sync::key_value(lock(&self.retained).get(topic).map(|p| &p.payload))
    }
    fn apply(
        &self,
        publication: &Arc<Publication>,
        publisher: Option<SessionId>,
        options: &PublishOptions,
    ) {
        assert!(options.retain);
        let value = crate::realm::sync::key_value(Some(&publication.payload));
        lock(&self.delivered).push((publication.id, publisher, value));
        let kept = Publication {
            id: publication.id,
            topic: publication.topic.clone(),
            payload: publication.payload.clone(),
            publisher: publication.publisher,
            disclosed: None,
            qos: 0,
            retain: true,
            properties: Default::default(),
        };
        lock(&self.retained).insert(publication.topic.clone(), kept);
    }
}

fn value(v: Option<&str>) -> crate::message::Payload {
    crate::message::Payload::Wamp {
        args: v.map(|v| vec![Value::from(v)]),
        kwargs: None,
    }
}

/// `session` writes `v` to `key`, retained, with the sync service's options `write`.
fn write(
    engine: &LocalEngine,
    realm: &Table,
    session: SessionId,
    v: Option<&str>,
    write: Option<KvWrite>,
) -> KvOutcome {
    let topic = Topic::from_wamp("res.lock");
    let options = PublishOptions {
        retain: true,
        ..Default::default()
    };
    let draft = Draft {
        publisher: Some(super::super::Publisher {
            id: session,
            authid: "a",
            authrole: "r",
        }),
        topic: &topic,
        payload: value(v),
        options: &options,
        properties: Default::default(),
    };
    match write {
        Some(kv) => engine.publish_conditional(realm, draft, &kv),
        None => KvOutcome::Applied(engine.publish(realm, draft)),
    }
}

fn lock_write() -> Option<KvWrite> {
    Some(KvWrite {
        when: Some(Value::Null),
        watch: true,
        will: Some(value(None)),
    })
}

#[test]
fn a_mutex_parks_the_second_writer_and_hands_over_on_release_and_on_a_crash() {
    use futures_util::FutureExt;
    let engine = LocalEngine::new(0, None);
    let realm = Table::default();
    let KvOutcome::Applied(first) = write(&engine, &realm, 1, Some("a"), lock_write()) else {
        panic!("a free lock is taken at once");
    };
    let first = first.id().unwrap();
    let KvOutcome::Parked(second) = write(&engine, &realm, 2, Some("b"), lock_write()) else {
        panic!("a held lock parks the next writer");
    };
    let KvOutcome::Parked(third) = write(&engine, &realm, 3, Some("c"), lock_write()) else {
        panic!("and the one after it");
    };
    let refusal = KvWrite {
        when: Some(Value::Null),
        watch: false,
        will: None,
    };
    assert!(matches!(
        write(&engine, &realm, 4, Some("d"), Some(refusal)),
        KvOutcome::Refused
    ));
    // The holder releases: the first parked writer gets the lock, with a later ID.
    let _ = write(&engine, &realm, 1, None, None);
    let mut second = Box::pin(second.wait());
    let second = second.as_mut().now_or_never().unwrap().unwrap();
    assert!(second > first);
    assert_eq!(realm.value(&Topic::from_wamp("res.lock")), Value::from("b"));
    // The new holder crashes: its will (null) clears the key, which wakes the third.
    engine.session_ended(&realm, 2, true);
    let mut third = Box::pin(third.wait());
    let third = third.as_mut().now_or_never().unwrap().unwrap();
    assert!(third > second);
    assert_eq!(realm.value(&Topic::from_wamp("res.lock")), Value::from("c"));
    let delivered: Vec<_> = lock(&realm.delivered)
        .iter()
        .map(|(_, p, v)| (*p, v.clone()))
        .collect();
    assert_eq!(
        delivered,
        [
            (Some(1), Value::from("a")),
            (Some(1), Value::Null),
            (Some(2), Value::from("b")),
            (None, Value::Null), // the will, written by the router
            (Some(3), Value::from("c")),
        ]
    );
    let ids: Vec<u64> = lock(&realm.delivered).iter().map(|d| d.0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in ID order: {ids:?}");
}

#[test]
fn a_parked_writer_that_leaves_is_answered_and_skipped() {
    use futures_util::FutureExt;
    let engine = LocalEngine::new(0, None);
    let realm = Table::default();
    let _held = write(&engine, &realm, 1, Some("a"), lock_write());
    let KvOutcome::Parked(gone) = write(&engine, &realm, 2, Some("b"), lock_write()) else {
        panic!("parked");
    };
    let KvOutcome::Parked(next) = write(&engine, &realm, 3, Some("c"), lock_write()) else {
        panic!("parked");
    };
    engine.session_ended(&realm, 2, false);
    let mut gone = Box::pin(gone.wait());
    assert!(matches!(
        gone.as_mut().now_or_never(),
        Some(Err(EngineError::Stopped))
    ));
    // A clean end of the holder forgets its will: the key stays, nobody is woken.
    engine.session_ended(&realm, 1, false);
    assert_eq!(realm.value(&Topic::from_wamp("res.lock")), Value::from("a"));
    let mut next = Box::pin(next.wait());
    assert!(next.as_mut().now_or_never().is_none());
}

#[test]
fn the_store_holds_the_wills_the_applier_holds() {
    let dir = tempfile::tempdir().unwrap();
    let durable = Durable::open(dir.path(), fox_storage::SyncMode::None).unwrap();
    let engine = LocalEngine::new(0, Some(Arc::new(durable)));
    let realm = Table::default();
    let stored = |engine: &LocalEngine| {
        let durable = engine.durable().unwrap();
        durable.flush_blocking().unwrap();
        durable.wills().unwrap()
    };
    let _ = write(&engine, &realm, 1, Some("a"), lock_write());
    let wills = stored(&engine);
    assert_eq!(wills.len(), 1);
    assert_eq!(wills[0].1, Topic::from_wamp("res.lock"));
    // A plain retained write cancels the will, in the store too.
    let _ = write(&engine, &realm, 5, Some("x"), None);
    assert!(stored(&engine).is_empty());
    // So does the abnormal end that fires it.
    let plain = KvWrite {
        when: None,
        watch: false,
        will: Some(value(Some("released"))),
    };
    let _ = write(&engine, &realm, 6, Some("y"), Some(plain));
    assert_eq!(stored(&engine).len(), 1);
    engine.session_ended(&realm, 6, true);
    assert!(stored(&engine).is_empty());
    assert_eq!(
        realm.value(&Topic::from_wamp("res.lock")),
        Value::from("released")
    );
}

#[test]
fn concurrent_ids_are_unique() {
    let s = std::sync::Arc::new(LocalSequencer::default());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || (0..10_000).map(|_| s.next(7)).collect::<Vec<_>>())
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 40_000);
}
