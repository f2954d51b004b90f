//! The dealer's callee picking, without a realm.

use super::*;
use crate::auth::Identity;
use crate::realm::edge::Now;
use crate::realm::SessionInfo;
use crate::topic::Topic;

/// The time and draw the dealer is given in these tests.
const T: Now = Now { ms: 1_000, draw: 0 };

fn callee(id: SessionId) -> SessionHandle {
    let info = SessionInfo {
        id,
        realm: "realm1".to_owned(),
        identity: Identity {
            authid: format!("c{id}"),
            authrole: "r".to_owned(),
            authmethod: "anonymous".to_owned(),
            authprovider: "static".to_owned(),
        },
        transport: "websocket",
        peer: String::new(),
        roles: Dict::new(),
    };
    SessionHandle::new(info, 8).0
}

fn registration(callees: &[SessionId], invoke: InvokePolicy) -> (Dealer, u64) {
    let mut dealer = Dealer::default();
    let pattern = Pattern::Exact(Topic::from_wamp("com.svc"));
    let mut id = 0;
    for c in callees {
        id = dealer
            .register(&callee(*c), pattern.clone(), invoke, None, T.ms)
            .unwrap()
            .0;
    }
    (dealer, id)
}

#[test]
fn least_loaded_takes_the_idlest_healthy_callee() {
    let (mut dealer, id) = registration(&[1, 2, 3], InvokePolicy::LeastLoaded);
    let reg = dealer.registrations.get_mut(&id).unwrap();
    let picked: Vec<SessionId> = (0..3).map(|_| reg.pick(T).unwrap().info.id).collect();
    assert_eq!(picked, [1, 2, 3], "each idle callee once, first on a tie");
    reg.release(2);
    assert_eq!(
        reg.pick(T).unwrap().info.id,
        2,
        "the one with the fewest in flight"
    );
    // Callee 1's invocation timed out: the others are preferred, even busier.
    reg.release(1);
    reg.note(1, Outcome::TimedOut, T.ms);
    assert_eq!(reg.pick(T).unwrap().info.id, 2);
    assert_eq!(
        reg.pick_for_registry(Some(InvokePolicy::First), T)
            .unwrap()
            .session
            .info
            .id,
        2,
        "the registry skips an unhealthy callee whatever the policy"
    );
    // An answer makes it healthy again; an ERROR is kept as its last error.
    reg.note(1, Outcome::Failed("com.oops".to_owned()), T.ms);
    let view = reg.view();
    let first = &view.callees[0];
    assert_eq!(first.health.last_error.as_deref(), Some("com.oops"));
    assert!(first.health.unhealthy_since_ms.is_none());
    assert_eq!(reg.pick(T).unwrap().info.id, 1);
}

#[test]
fn an_unhealthy_callee_is_tried_again_after_a_while() {
    let health = CalleeHealth {
        unhealthy_since_ms: Some(1_000),
        ..CalleeHealth::default()
    };
    assert!(!health.is_healthy(1_000 + UNHEALTHY_MS - 1));
    assert!(health.is_healthy(1_000 + UNHEALTHY_MS));
    assert!(CalleeHealth::default().is_healthy(0));
}

#[test]
fn the_registry_round_robin_rotates_without_invoking() {
    let (mut dealer, id) = registration(&[1, 2], InvokePolicy::RoundRobin);
    let reg = dealer.registrations.get_mut(&id).unwrap();
    let picks: Vec<SessionId> = (0..4)
        .map(|_| reg.pick_for_registry(None, T).unwrap().session.info.id)
        .collect();
    assert_eq!(picks, [1, 2, 1, 2]);
    assert!(
        reg.in_flight.values().all(|n| *n == 0),
        "nothing was invoked"
    );
    assert_eq!(dealer.services()[0].callees.len(), 2);
    assert!(dealer.registration_for("com.svc").is_some());
    assert!(dealer.registration_for("com.other").is_none());
}
