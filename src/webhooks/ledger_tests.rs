use super::*;

fn key(c: &str) -> ChannelKey {
    (Arc::from("app"), Arc::from(c))
}

fn user(u: &str) -> Arc<str> {
    Arc::from(u)
}

const GRACE: Duration = Duration::from_millis(1000);

#[test]
fn without_grace_occupied_and_vacated_alternate_at_once() {
    let mut l = Ledger::new(Duration::ZERO);
    let now = Instant::now();
    let mut out = Vec::new();
    l.occupied(key("a"), &mut out);
    l.vacated(key("a"), now, &mut out);
    l.occupied(key("a"), &mut out);
    l.vacated(key("a"), now, &mut out);
    assert_eq!(
        out,
        [
            Told::Occupied(key("a")),
            Told::Vacated(key("a")),
            Told::Occupied(key("a")),
            Told::Vacated(key("a"))
        ]
    );
    assert_eq!(l.remembered(), 0, "nothing kept for a vacated channel");
}

#[test]
fn a_leave_and_a_join_within_the_grace_tell_nothing() {
    let mut l = Ledger::new(GRACE);
    let t0 = Instant::now();
    let mut out = Vec::new();
    l.occupied(key("a"), &mut out);
    l.member_added(key("a"), user("u1"), &mut out);
    assert_eq!(
        out,
        [
            Told::Occupied(key("a")),
            Told::MemberAdded(key("a"), user("u1"))
        ]
    );
    out.clear();
    // A page reload: everything leaves, then comes back 300 ms later.
    l.member_removed(key("a"), user("u1"), t0, &mut out);
    l.vacated(key("a"), t0, &mut out);
    l.occupied(key("a"), &mut out);
    l.member_added(key("a"), user("u1"), &mut out);
    l.due(t0 + GRACE * 2, &mut out);
    assert_eq!(out, []);
    // Leaving for good: told once the grace is over, member first.
    l.member_removed(key("a"), user("u1"), t0 + GRACE * 3, &mut out);
    l.vacated(key("a"), t0 + GRACE * 3, &mut out);
    l.due(t0 + GRACE * 3 + GRACE / 2, &mut out);
    assert_eq!(out, [], "not before the grace is over");
    assert_eq!(l.next_due(), Some(t0 + GRACE * 4));
    l.due(t0 + GRACE * 4, &mut out);
    assert_eq!(
        out,
        [
            Told::MemberRemoved(key("a"), user("u1")),
            Told::Vacated(key("a"))
        ]
    );
    assert_eq!(l.remembered(), 0);
}

#[test]
fn a_stale_timer_does_not_fire_for_a_later_leave() {
    let mut l = Ledger::new(GRACE);
    let t0 = Instant::now();
    let mut out = Vec::new();
    l.occupied(key("a"), &mut out);
    out.clear();
    l.vacated(key("a"), t0, &mut out); // timer 1, due t0 + 1 s
    l.occupied(key("a"), &mut out); // called off
    l.vacated(key("a"), t0 + GRACE / 2, &mut out); // timer 2, due t0 + 1.5 s
    l.due(t0 + GRACE, &mut out);
    assert_eq!(out, [], "the first timer was called off");
    l.due(t0 + GRACE + GRACE / 2, &mut out);
    assert_eq!(out, [Told::Vacated(key("a"))]);
}

#[test]
fn shutdown_flush_tells_every_waiting_leave_in_order() {
    let mut l = Ledger::new(GRACE);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for c in ["a", "b"] {
        l.occupied(key(c), &mut out);
        l.member_added(key(c), user("u"), &mut out);
    }
    out.clear();
    for c in ["b", "a"] {
        l.member_removed(key(c), user("u"), t0, &mut out);
        l.vacated(key(c), t0, &mut out);
    }
    l.flush(&mut out);
    assert_eq!(
        out,
        [
            Told::MemberRemoved(key("b"), user("u")),
            Told::Vacated(key("b")),
            Told::MemberRemoved(key("a"), user("u")),
            Told::Vacated(key("a"))
        ]
    );
    assert_eq!(l.remembered(), 0);
}

#[test]
fn a_thousand_fast_leave_join_loops_alternate_and_end_in_the_final_state() {
    for grace in [Duration::ZERO, Duration::from_millis(5)] {
        let mut l = Ledger::new(grace);
        let mut now = Instant::now();
        let mut out = Vec::new();
        for i in 0..1000 {
            l.occupied(key("a"), &mut out);
            now += Duration::from_micros(700 + (i % 13) * 300);
            l.vacated(key("a"), now, &mut out);
            now += Duration::from_micros(100 + (i % 7) * 1500);
            l.due(now, &mut out);
        }
        l.due(now + grace * 2, &mut out);
        assert!(!out.is_empty());
        for pair in out.windows(2) {
            assert_ne!(
                std::mem::discriminant(&pair[0]),
                std::mem::discriminant(&pair[1]),
                "{out:?}"
            );
        }
        assert_eq!(out.first(), Some(&Told::Occupied(key("a"))));
        assert_eq!(out.last(), Some(&Told::Vacated(key("a"))), "final state");
        if grace.is_zero() {
            assert_eq!(out.len(), 2000);
        }
    }
}
