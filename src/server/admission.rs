//! `/validate`'s decision on a decoded request: ClusterPairs and mapping ConfigMaps checked,
//! answered by the one writer ([`Response::to_review`]).

use serde_json::Value;

use super::review::{bounded_warnings, Answer, Request, RequestOutcome, Response};
use crate::validate;

/// `Kind namespace/name` for messages and logs.
/// (The request's own name and namespace: on CREATE the object may not carry its namespace.)
pub fn describe(req: &Request<'_, Value>) -> String {
    let generate_name = req
        .object
        .as_ref()
        .and_then(|o| o.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    crate::rewrite::object_ref(&req.kind, &req.namespace, &req.name, generate_name)
}

/// `/validate` (docs/behaviour.md): ClusterPairs and mapping ConfigMaps on CREATE and UPDATE.
/// `cluster_id`: this cluster's Rancher ID, which a mapping ConfigMap's table must fit.
pub fn validate(req: &Request<'_, Value>, now: i64, cluster_id: Option<&str>) -> Answer {
    let is_write = matches!(&*req.operation, "CREATE" | "UPDATE");
    let checked = req
        .object
        .as_ref()
        .filter(|o| is_write && validate::is_validated(o))
        .map(|obj| validate::check(obj, now, cluster_id));
    let (warnings, denial) = match &checked {
        Some(report) => {
            let object = describe(req);
            let warnings = report.warnings.iter().map(|w| format!("{object}: {w}"));
            let denial = report.is_denied().then(|| report.denial(&object));
            (bounded_warnings(warnings), denial)
        }
        None => (Vec::new(), None),
    };
    let response = Response {
        uid: &req.uid,
        denial: denial.as_deref(),
        warnings: &warnings,
        ..Response::default()
    };
    response.answer(match denial {
        Some(_) => RequestOutcome::Denied,
        None => RequestOutcome::Allowed,
    })
}
