//! The admission decisions on a decoded request (and the mappings in force): a response plus
//! what to log and count. `/validate` answers from here; `mutate` is the reference path over a
//! decoded tree (tests, benches, the fuzz target) beside the webhook's byte path
//! (`server::mutate`), and both take the decision which requests are rewritten from the core
//! (`rewrite::admit`).

use std::collections::BTreeMap;

use base64::Engine;

use super::outcome::RequestOutcome;
use super::review::{bounded_warnings, Request, Response};
use crate::mapping::objects::Mappings;
use crate::rewrite::{
    admit, has_migrated_annotation, is_namespace, namespace_claim_of, rewrite, Mode,
    MutateSettings, NamespaceClaim, Options, Outcome, Writer,
};
use crate::text::truncate;
use crate::validate;

/// The warning that says what `--mode warn` did not apply (`audit`: the audit annotation's text).
pub fn not_applied_warning(object: &str, audit: &str) -> String {
    format!("{object}: --mode warn: the patch was not applied; it would have rewritten: {audit}")
}

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

/// `/mutate` (docs/behaviour.md).
pub fn mutate(req: &Request, mappings: &Mappings, settings: &MutateSettings) -> Decision {
    let Some(obj) = req.object.as_ref().filter(|_| is_write(&req.operation)) else {
        return Decision::allow(&req.uid);
    };
    let claim = if is_namespace(&req.kind.kind) {
        namespace_claim_of(obj, &mappings.table, settings.cluster_id.as_deref())
    } else {
        NamespaceClaim::Unknown
    };
    let writer = Writer {
        username: &req.user_info.username,
        migrated_annotation: has_migrated_annotation(obj),
        claim,
    };
    let Some(migrated) = admit(&writer, mappings, settings) else {
        return Decision::allow(&req.uid);
    };
    let outcome = rewrite(
        obj,
        &mappings.table,
        &Options {
            unmapped: settings.unmapped,
            migrated,
        },
    );
    let object = req.describe();
    let mut warnings = outcome.warnings(&object);
    let warn_only =
        settings.mode == Mode::Warn && !outcome.patch.is_empty() && !outcome.is_denied();
    let audit = audit(&outcome);
    if warn_only {
        warnings.push(not_applied_warning(&object, &audit["project-ids"]));
    }
    let warnings = bounded_warnings(warnings);
    if let Some(reason) = outcome.denial(&object) {
        let mut response = Response::deny(&req.uid, reason);
        response.warnings = warnings;
        return Decision {
            response,
            verdict: RequestOutcome::Denied,
        };
    }
    let mut response = Response::allow(&req.uid);
    response.warnings = warnings;
    let verdict = if outcome.patch.is_empty() {
        RequestOutcome::Allowed
    } else if warn_only {
        response.audit_annotations = audit;
        RequestOutcome::WouldPatch
    } else {
        // Serialising a Vec of patch operations cannot fail (string keys, no maps of non-strings).
        let json = serde_json::to_vec(&outcome.patch).unwrap_or_default();
        response.patch_type = Some("JSONPatch");
        response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        response.audit_annotations = audit;
        RequestOutcome::Patched
    };
    Decision { response, verdict }
}

/// One audit annotation summing up the rewrite (bounded: audit events are not a data store).
fn audit(outcome: &Outcome) -> BTreeMap<String, String> {
    let mut parts: Vec<String> = outcome
        .rewrites
        .iter()
        .map(|r| format!("{} {}->{}", r.path(), r.from, r.to))
        .collect();
    parts.extend(
        outcome
            .unmapped
            .iter()
            .filter(|u| u.action == crate::rewrite::UnmappedAction::Removed)
            .map(|u| format!("{} {} removed", u.path(), u.value)),
    );
    let text = truncate(parts.join("; "), 2000);
    BTreeMap::from([("project-ids".to_string(), text)])
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
