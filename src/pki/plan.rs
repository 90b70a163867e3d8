//! When the server's own certificates change: the one pure decision behind the certificate
//! Secret. Every replica runs it on what it reads; whichever writes first wins, and the others
//! read the result (the write carries the resourceVersion it was planned on).
//!
//! The serving pair is renewed when a third of its validity is left. The CA is rolled over long
//! before it expires, in steps that never leave a handshake untrusted:
//! 1. a new CA is made; the Secret's bundle (what every webhook configuration's caBundle must
//!    hold) becomes old + new, and the serving pair is renewed by the old CA (a whole lifetime
//!    to wait for step 2);
//! 2. once every webhook configuration has held that bundle for the grace (so every API
//!    server's informer has seen it), the serving pair is re-issued by the new CA;
//! 3. when the old CA expires, it leaves the bundle.

use time::OffsetDateTime;

use super::{at, issue_serving, new_ca, CertInfo, PemPair, PkiError};

/// The material of the certificate Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// The CA that signs new serving pairs.
    pub ca: PemPair,
    /// The pair the server presents.
    pub serving: PemPair,
    /// PEM of the CAs clients must trust: the CA, and during a rollover the previous one first.
    pub bundle: String,
}

/// Lifetimes and names of the certificates the server makes.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Names in the CA's common name (the namespace, so operators can tell CAs apart).
    pub label: String,
    /// The serving certificate's DNS names; a stored pair with other names is re-issued.
    pub dns_names: Vec<String>,
    /// Seconds a serving certificate is valid.
    pub serving_validity: i64,
    /// Seconds a CA is valid.
    pub ca_validity: i64,
    /// Seconds every webhook configuration must have held a new bundle before step 2.
    pub rollover_grace: i64,
}

/// Why the Secret is rewritten (said in the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Missing,
    Unusable,
    CaExpired,
    Expired,
    NamesChanged,
    Expiring,
    RolloverFinished,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Missing => "missing",
            Why::Unusable => "unusable",
            Why::CaExpired => "ca_expired",
            Why::Expired => "expired",
            Why::NamesChanged => "names_changed",
            Why::Expiring => "expiring",
            Why::RolloverFinished => "rollover_finished",
        }
    }
}

/// What to do with the Secret now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing until then (Unix seconds), unless the Secret or the webhook configurations change.
    Keep { until: i64 },
    /// A new CA and serving pair.
    Replace(Why),
    /// A new serving pair from the CA.
    RenewServing(Why),
    /// Rollover step 1.
    StartRollover,
    /// Rollover step 3.
    DropPreviousCa,
}

/// The stored material, read and checked.
struct Checked {
    ca: CertInfo,
    serving: CertInfo,
    previous: Option<CertInfo>,
}

fn check(s: &Stored) -> Option<Checked> {
    let ca = CertInfo::parse(&s.ca.cert, "CA certificate").ok()?;
    let serving = CertInfo::parse(&s.serving.cert, "serving certificate").ok()?;
    let bundle = CertInfo::parse_bundle(&s.bundle)?;
    let usable = ca.is_ca
        && ca.matches_key(&s.ca.key)
        && serving.matches_key(&s.serving.key)
        && bundle.len() <= 2
        && bundle.iter().any(|b| b.subject == ca.subject)
        && bundle.iter().any(|b| serving.issued_by(b));
    let previous = bundle.into_iter().find(|b| b.subject != ca.subject);
    usable.then_some(Checked {
        ca,
        serving,
        previous,
    })
}

/// Whether `stored` can be served and kept (not to be replaced whole).
pub fn usable(stored: &Stored, now: i64) -> bool {
    check(stored).is_some_and(|c| now < c.ca.not_after)
}

/// The step for `stored` at `now`. `published_since`: since when (Unix seconds) every webhook
/// configuration's caBundle has held the stored bundle, as far as the caller has seen (what
/// makes rollover step 2 safe); `None` when one does not.
pub fn plan(
    stored: Option<&Stored>,
    policy: &Policy,
    now: i64,
    published_since: Option<i64>,
) -> Step {
    let Some(s) = stored else {
        return Step::Replace(Why::Missing);
    };
    let Some(c) = check(s) else {
        return Step::Replace(Why::Unusable);
    };
    if now >= c.ca.not_after {
        return Step::Replace(Why::CaExpired);
    }
    if now >= c.serving.not_after {
        return Step::RenewServing(Why::Expired);
    }
    if c.serving.dns_names != policy.dns_names {
        return Step::RenewServing(Why::NamesChanged);
    }
    if let Some(previous) = &c.previous {
        if c.serving.issued_by(previous) {
            return match published_since.map(|t| t + policy.rollover_grace) {
                Some(ready) if now >= ready => Step::RenewServing(Why::RolloverFinished),
                Some(ready) => Step::Keep {
                    until: ready.min(c.serving.not_after),
                },
                // Not published: a change of the Secret or the next resync tries again. Only a
                // pair about to expire is renewed regardless, by the new CA (the old one's key
                // is gone): better a pair some API servers may not trust yet than none valid.
                None => {
                    let last_call = c.serving.not_after - policy.serving_validity / 10;
                    if now >= last_call {
                        Step::RenewServing(Why::Expiring)
                    } else {
                        Step::Keep { until: last_call }
                    }
                }
            };
        }
        if now >= previous.not_after {
            return Step::DropPreviousCa;
        }
    }
    // The CA is rolled over two serving lifetimes before its end (every serving pair it signs
    // can still be renewed on time), at most half its own life.
    let roll_at =
        c.ca.not_after - (2 * policy.serving_validity).min((c.ca.not_after - c.ca.not_before) / 2);
    if c.previous.is_none() && now >= roll_at {
        return Step::StartRollover;
    }
    // A third of the nominal life, not of the certificate's own: that includes the backdating
    // (minutes), which would renew short-lived certificates at once.
    let renew_at = c.serving.not_after - policy.serving_validity / 3;
    if now >= renew_at {
        return Step::RenewServing(Why::Expiring);
    }
    let next = match &c.previous {
        Some(previous) => previous.not_after,
        None => roll_at,
    };
    Step::Keep {
        until: renew_at.min(next),
    }
}

/// The material after `step` (which must not be `Keep`: that returns `stored` unchanged).
pub fn apply(
    step: Step,
    stored: Option<&Stored>,
    policy: &Policy,
    now: i64,
) -> Result<Stored, PkiError> {
    let fresh = || -> Result<Stored, PkiError> {
        let ca = new_ca(&policy.label, at(now), at(now + policy.ca_validity))?;
        let serving = serve_from(&ca, policy, now)?;
        Ok(Stored {
            bundle: ca.cert.clone(),
            ca,
            serving,
        })
    };
    let Some(s) = stored else {
        return fresh();
    };
    match step {
        Step::Keep { .. } => Ok(s.clone()),
        Step::Replace(_) => fresh(),
        Step::RenewServing(_) => Ok(Stored {
            serving: serve_from(&s.ca, policy, now)?,
            ..s.clone()
        }),
        Step::StartRollover => {
            // A fresh pair from the old CA first: the longest wait for the new bundle to be
            // published (a whole serving lifetime) before the pair in force could expire.
            let serving = serve_from(&s.ca, policy, now)?;
            let ca = new_ca(&policy.label, at(now), at(now + policy.ca_validity))?;
            Ok(Stored {
                bundle: format!("{}{}", s.ca.cert, ca.cert),
                ca,
                serving,
            })
        }
        Step::DropPreviousCa => Ok(Stored {
            bundle: s.ca.cert.clone(),
            ..s.clone()
        }),
    }
}

/// A serving pair from `ca`, valid for the policy's lifetime or until the CA ends if sooner.
fn serve_from(ca: &PemPair, policy: &Policy, now: i64) -> Result<PemPair, PkiError> {
    let ca_end = CertInfo::parse(&ca.cert, "CA certificate")?.not_after;
    let until = (now + policy.serving_validity).min(ca_end);
    issue_serving(ca, &policy.dns_names, at(now), at(until))
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}
