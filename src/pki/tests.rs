use super::plan::{apply, plan, Policy, Step, Stored, Why};
use super::*;

fn policy() -> Policy {
    Policy {
        label: "test".into(),
        dns_names: service_dns_names("rancher-remap", "test"),
        serving_validity: 3_000,
        ca_validity: 30_000,
        rollover_grace: 100,
    }
}

const T0: i64 = 1_800_000_000;

/// The plan for `s` under [`policy`].
fn step(s: &Stored, now: i64, published_since: Option<i64>) -> Step {
    plan(Some(s), &policy(), now, published_since)
}

fn made(p: &Policy, now: i64) -> Stored {
    let step = plan(None, p, now, None);
    assert_eq!(step, Step::Replace(Why::Missing));
    apply(step, None, p, now).unwrap()
}

/// Follows the plan from `now` (waiting as it says, renewing the serving pair as it asks) until
/// it asks for `wanted`; any other step fails the test. The material and the time then.
fn until_step(
    mut s: Stored,
    p: &Policy,
    mut now: i64,
    published_since: Option<i64>,
    wanted: Step,
) -> (Stored, i64) {
    loop {
        match plan(Some(&s), p, now, published_since) {
            step if step == wanted => return (s, now),
            Step::Keep { until } => now = until,
            Step::RenewServing(Why::Expiring) => {
                s = apply(Step::RenewServing(Why::Expiring), Some(&s), p, now).unwrap()
            }
            other => panic!("unexpected {other:?} at {now}"),
        }
    }
}

fn info(pem: &str) -> CertInfo {
    CertInfo::parse(pem, "certificate").unwrap()
}

#[test]
fn a_new_secret_holds_a_ca_and_a_pair_it_signed_for_the_service_names() {
    let p = policy();
    let s = made(&p, T0);
    let (ca, serving) = (info(&s.ca.cert), info(&s.serving.cert));
    assert!(ca.is_ca && !serving.is_ca);
    assert!(serving.issued_by(&ca));
    assert_eq!(serving.dns_names, p.dns_names);
    assert_eq!(serving.not_after, T0 + p.serving_validity);
    assert_eq!(ca.not_after, T0 + p.ca_validity);
    assert!(
        serving.not_before < T0,
        "backdated for clocks a little behind"
    );
    assert_eq!(s.bundle, s.ca.cert);
    assert!(ca.matches_key(&s.ca.key) && serving.matches_key(&s.serving.key));
    assert!(!ca.matches_key(&s.serving.key));
    // Nothing to do until a third of the serving life is left.
    let renew_at = serving.not_after - p.serving_validity / 3;
    assert_eq!(step(&s, T0, Some(T0)), Step::Keep { until: renew_at });
    assert_eq!(
        step(&s, renew_at, Some(T0)),
        Step::RenewServing(Why::Expiring)
    );
}

#[test]
fn unusable_material_is_replaced_whole() {
    let p = policy();
    let s = made(&p, T0);
    let other = made(&p, T0);
    let with = |change: &dyn Fn(&mut Stored)| {
        let mut b = s.clone();
        change(&mut b);
        b
    };
    let broken = [
        with(&|b| b.serving.key = other.serving.key.clone()),
        with(&|b| b.ca.key = other.ca.key.clone()),
        with(&|b| b.bundle = other.bundle.clone()),
        with(&|b| b.bundle = "not PEM".into()),
        with(&|b| b.ca = s.serving.clone()),
    ];
    for b in &broken {
        assert_eq!(step(b, T0, Some(T0)), Step::Replace(Why::Unusable));
    }
    assert_eq!(
        step(&s, T0 + p.ca_validity, Some(T0)),
        Step::Replace(Why::CaExpired)
    );
    let renamed = Policy {
        dns_names: service_dns_names("other", "test"),
        ..policy()
    };
    assert_eq!(
        plan(Some(&s), &renamed, T0, Some(T0)),
        Step::RenewServing(Why::NamesChanged)
    );
}

#[test]
fn a_rollover_waits_for_the_bundle_to_be_published_and_the_grace_to_pass() {
    let p = policy();
    let s = made(&p, T0);
    let old_ca = info(&s.ca.cert);
    let roll_at = old_ca.not_after - 2 * p.serving_validity;
    // Renewed in between, the serving pair stays signed by the old CA.
    let (s, now) = until_step(s, &p, T0, Some(T0), Step::StartRollover);
    assert_eq!(now, roll_at);
    let rolled = apply(Step::StartRollover, Some(&s), &p, now).unwrap();
    let bundle = CertInfo::parse_bundle(&rolled.bundle).unwrap();
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle[0].subject, old_ca.subject);
    assert_eq!(bundle[1].subject, info(&rolled.ca.cert).subject);
    assert_ne!(bundle[0].subject, bundle[1].subject);
    let renewed = info(&rolled.serving.cert);
    assert_ne!(rolled.serving, s.serving);
    assert!(
        renewed.issued_by(&old_ca),
        "step 1 renews the pair from the old CA"
    );
    assert_eq!(renewed.not_after, now + p.serving_validity);
    // Not published: wait, however late, until the pair is about to expire (a tenth of its
    // life left); then it is renewed regardless, by the new CA.
    let last_call = renewed.not_after - p.serving_validity / 10;
    assert_eq!(
        step(&rolled, last_call - 1, None),
        Step::Keep { until: last_call }
    );
    assert_eq!(
        step(&rolled, last_call, None),
        Step::RenewServing(Why::Expiring)
    );
    // Published late: the grace counts from the publication, not from step 1.
    let published = now + 5 * p.rollover_grace;
    let ready = published + p.rollover_grace;
    assert_eq!(
        step(&rolled, published + 1, Some(published)),
        Step::Keep { until: ready }
    );
    assert_eq!(
        step(&rolled, ready, Some(published)),
        Step::RenewServing(Why::RolloverFinished)
    );
    let finished = apply(
        Step::RenewServing(Why::RolloverFinished),
        Some(&rolled),
        &p,
        ready,
    )
    .unwrap();
    assert!(info(&finished.serving.cert).issued_by(&info(&finished.ca.cert)));
    assert_eq!(finished.bundle, rolled.bundle);
    // The old CA leaves the bundle when it expires, not before.
    let (finished, now) = until_step(finished, &p, ready, Some(published), Step::DropPreviousCa);
    assert_eq!(now, old_ca.not_after);
    let dropped = apply(Step::DropPreviousCa, Some(&finished), &p, old_ca.not_after).unwrap();
    assert_eq!(dropped.bundle, dropped.ca.cert);
}

/// Runs the plan for ten CA lifetimes. The server publishes each new bundle at once; API
/// servers learn it up to 90 s later (under the 100 s grace). Every handshake must verify, at
/// every step.
#[test]
fn clients_that_learn_the_bundle_late_never_meet_an_untrusted_certificate() {
    const LAG: i64 = 90;
    let p = policy();
    let mut now = T0;
    let mut s = made(&p, now);
    // (since, bundle) as the webhook configurations held them, oldest first.
    let mut published = vec![(now - LAG, s.bundle.clone())];
    let mut rollovers = 0;
    while now < T0 + 10 * p.ca_validity {
        let since = published.last().map(|(t, _)| *t);
        match step(&s, now, since) {
            Step::Keep { until } => now = until.max(now + 1).min(now + 60),
            step => {
                if step == Step::StartRollover {
                    rollovers += 1;
                }
                s = apply(step, Some(&s), &p, now).unwrap();
                if published.last().is_some_and(|(_, b)| *b != s.bundle) {
                    published.push((now, s.bundle.clone()));
                }
            }
        }
        // What the API servers trust: the bundle published at least LAG ago.
        let trusted = &published
            .iter()
            .rev()
            .find(|(t, _)| *t <= now - LAG)
            .unwrap()
            .1;
        let serving = info(&s.serving.cert);
        let roots = CertInfo::parse_bundle(trusted).unwrap();
        assert!(
            roots
                .iter()
                .any(|r| serving.issued_by(r) && now < r.not_after),
            "at {now} the serving certificate is not signed by a trusted, valid CA"
        );
        assert!(serving.not_before <= now && now < serving.not_after);
    }
    assert!(rollovers >= 9, "{rollovers} rollovers");
}
