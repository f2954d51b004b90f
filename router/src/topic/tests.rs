use super::*;
use proptest::prelude::*;

#[test]
fn wamp_and_mqtt_spell_the_same_topic() {
    assert_eq!(Topic::from_wamp("a.b.c"), Topic::from_mqtt("a/b/c"));
    assert_eq!(Topic::from_mqtt("x.y/z").to_wamp(), "x/y.z");
    assert_eq!(Topic::from_wamp("x/y.z").to_mqtt(), "x.y/z");
    assert_ne!(Topic::from_mqtt("a.b"), Topic::from_mqtt("a/b"));
}

#[test]
fn spellings_are_kept_and_shared_by_clones() {
    let t = Topic::from_mqtt_owned("x.y/z".to_owned());
    assert_eq!(t.mqtt_name(), "x.y/z");
    let clone = t.clone();
    assert_eq!(clone.wamp_uri(), "x/y.z");
    assert!(
        std::ptr::eq(t.wamp_uri(), clone.wamp_uri()),
        "computed once"
    );
    // Equality, order and hash are the levels', whichever spellings are cached.
    let w = Topic::from_wamp("x/y.z");
    assert_eq!(t, w);
    assert_eq!(t.cmp(&w), std::cmp::Ordering::Equal);
    let hash = |t: &Topic| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    };
    assert_eq!(hash(&t), hash(&w));
}

#[test]
fn prefix_is_a_string_prefix() {
    let p = Pattern::from_wamp("com.myapp", MatchPolicy::Prefix);
    assert!(p.matches(&Topic::from_wamp("com.myapp")));
    assert!(p.matches(&Topic::from_wamp("com.myapp2")));
    assert!(p.matches(&Topic::from_wamp("com.myapp.x.y")));
    assert!(!p.matches(&Topic::from_wamp("com.my")));
}

#[test]
fn wildcard_and_plus_are_one_level() {
    let w = Pattern::from_wamp("a..c", MatchPolicy::Wildcard);
    assert_eq!(w, Pattern::from_mqtt_filter("a/+/c"));
    assert!(w.matches(&Topic::from_mqtt("a/b/c")));
    assert!(!w.matches(&Topic::from_mqtt("a/b/c/d")));
}

#[test]
fn hash_matches_parent_and_children() {
    let t = Pattern::from_mqtt_filter("a/#");
    assert!(t.matches(&Topic::from_mqtt("a")));
    assert!(t.matches(&Topic::from_mqtt("a/b/c")));
    assert!(!t.matches(&Topic::from_mqtt("ab")));
    assert!(Pattern::from_mqtt_filter("#").matches(&Topic::from_mqtt("x/y")));
}

#[test]
fn trie_remove_prunes() {
    let mut trie = Trie::new();
    let p = Pattern::from_mqtt_filter("a/+/c/#");
    trie.insert(&p, 1u64);
    assert!(trie.remove(&p, &1));
    assert!(!trie.remove(&p, &1));
    assert!(trie.root.is_empty());
    assert!(trie.is_empty());
}

fn level() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "ab", "", "x/y", "y/"]).prop_map(str::to_owned)
}

fn topic() -> impl Strategy<Value = Topic> {
    prop::collection::vec(level(), 1..5).prop_map(Topic::from_levels)
}

fn pattern() -> impl Strategy<Value = Pattern> {
    let opt = || prop::option::weighted(0.7, level());
    prop_oneof![
        topic().prop_map(Pattern::Exact),
        (prop::collection::vec(level(), 0..4), level())
            .prop_map(|(levels, partial)| Pattern::Prefix { levels, partial }),
        prop::collection::vec(opt(), 1..5).prop_map(Pattern::Wildcard),
        prop::collection::vec(opt(), 0..4).prop_map(Pattern::Tail),
    ]
}

proptest! {
    #[test]
    fn mqtt_round_trip(t in topic()) {
        prop_assert_eq!(Topic::from_mqtt(&t.to_mqtt()), t.clone());
        prop_assert_eq!(Topic::from_wamp(&t.to_wamp()), t);
    }

    #[test]
    fn trie_agrees_with_reference(patterns in prop::collection::vec(pattern(), 0..12),
                                  topics in prop::collection::vec(topic(), 1..8),
                                  removals in prop::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        let mut trie = Trie::new();
        let mut live: Vec<(usize, Pattern)> = patterns.into_iter().enumerate().collect();
        for (i, p) in &live {
            trie.insert(p, *i);
        }
        for r in removals {
            if live.is_empty() { break; }
            let (i, p) = live.remove(r.index(live.len()));
            prop_assert!(trie.remove(&p, &i));
        }
        prop_assert_eq!(trie.len(), live.len());
        for t in &topics {
            let mut got = Vec::new();
            trie.matches(t, |v| got.push(*v));
            got.sort_unstable();
            let mut want: Vec<usize> = live.iter().filter(|(_, p)| p.matches(t)).map(|(i, _)| *i).collect();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }
}
