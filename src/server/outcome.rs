//! How an admission request ended: one enum that names the requests metric's `outcome` label,
//! indexes its counters, and decides the log level.

/// How an admission request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Allowed without a patch.
    Allowed,
    /// Allowed with a patch.
    Patched,
    /// `--mode warn`: a patch was due and not sent.
    WouldPatch,
    Denied,
    /// Not a review the webhook can answer (HTTP 4xx).
    BadRequest,
    /// No mapping table yet (HTTP 503).
    Unavailable,
    /// `/mutate` on a `--validate-only` server (HTTP 404).
    NotServed,
}

impl RequestOutcome {
    /// Every outcome, in the order of [`RequestOutcome::index`].
    pub const ALL: [RequestOutcome; 7] = [
        RequestOutcome::Allowed,
        RequestOutcome::Patched,
        RequestOutcome::WouldPatch,
        RequestOutcome::Denied,
        RequestOutcome::BadRequest,
        RequestOutcome::Unavailable,
        RequestOutcome::NotServed,
    ];

    /// The metric label and the log field.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Allowed => "allowed",
            RequestOutcome::Patched => "patched",
            RequestOutcome::WouldPatch => "would_patch",
            RequestOutcome::Denied => "denied",
            RequestOutcome::BadRequest => "bad_request",
            RequestOutcome::Unavailable => "unavailable",
            RequestOutcome::NotServed => "not_served",
        }
    }

    /// Its position in [`RequestOutcome::ALL`] (for per-outcome counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether an admission is logged at info: it did anything but allow quietly (a rewrite
    /// is `Patched` or `WouldPatch`; an unmapped value always warns).
    pub fn is_notable(self, warned: bool) -> bool {
        self != RequestOutcome::Allowed || warned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_sits_at_its_index() {
        for (i, o) in RequestOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i, "{o:?}");
        }
    }
}
