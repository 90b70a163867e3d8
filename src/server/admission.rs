//! `/validate`'s decision on a decoded request: a response plus what to log and count.
//! (`/mutate` decides on the request bytes, in `server::mutate`: the webhook's one decision.)

use super::outcome::RequestOutcome;
use super::review::{bounded_warnings, Request, Response};
use crate::validate;

/// A response and what it was made from.
#[derive(Debug)]
pub struct Decision {
    pub response: Response,
    pub verdict: RequestOutcome,
}

impl Decision {
    fn allow(uid: &str) -> Self {
        Decision {
            response: Response::allow(uid),
            verdict: RequestOutcome::Allowed,
        }
    }
}

/// The operation for logs: one of the four kube-apiserver sends, else `other` (a client that
/// is not kube-apiserver may put anything there, and logs must not carry what it sent).
pub fn operation_name(operation: &str) -> &'static str {
    match operation {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

fn is_write(operation: &str) -> bool {
    matches!(operation, "CREATE" | "UPDATE")
}

/// `/validate` (docs/behaviour.md): ClusterPairs and mapping ConfigMaps on CREATE and UPDATE.
/// `cluster_id`: this cluster's Rancher ID, which a mapping ConfigMap's table must fit.
pub fn validate(req: &Request, now: i64, cluster_id: Option<&str>) -> Decision {
    let Some(obj) = req
        .object
        .as_ref()
        .filter(|o| is_write(&req.operation) && validate::is_validated(o))
    else {
        return Decision::allow(&req.uid);
    };
    let report = validate::check(obj, now, cluster_id);
    let object = req.describe();
    let warnings = bounded_warnings(report.warnings.iter().map(|w| format!("{object}: {w}")));
    if report.is_denied() {
        let mut response = Response::deny(&req.uid, report.denial(&object));
        response.warnings = warnings;
        return Decision {
            response,
            verdict: RequestOutcome::Denied,
        };
    }
    let mut response = Response::allow(&req.uid);
    response.warnings = warnings;
    Decision {
        response,
        verdict: RequestOutcome::Allowed,
    }
}
