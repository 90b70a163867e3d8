//! The audit of objects already in a cluster: the webhook's rewrite (the [`rewrite`](crate::rewrite) engine,
//! unchanged) run on every object of every resource type the API server lists and patches, and,
//! with `--fix`, the webhook's patch applied behind a resourceVersion `test`.
//!
//! Lists are paged (`limit`/`continue`) and at most `concurrency` requests are in flight, so
//! memory holds about `concurrency` pages plus the findings, whatever the cluster's size.
//! Namespaces are audited last: in the `migrated` scope a Namespace counts when its Rancher
//! annotation names a source cluster of the table (as in the webhook), or when it holds a
//! migrated object (Stork does not mark the Namespaces it creates), which only the other types'
//! lists tell. A Namespace annotated with this cluster's ID (`--cluster-id`) never counts.

mod api;
mod discovery;
mod fix;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use futures::StreamExt;
use kube::Client;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

pub use discovery::{discover, ResourceType};

use crate::kube_error::KubeError;
use crate::mapping::objects::Mappings;
use crate::rewrite::{
    decide_object, display_pointer, has_migrated_annotation, Action, MutateSettings, UnmappedAction,
};
use api::Read;

/// Which namespaces are audited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// Only these (namespaced objects in them, and these Namespace objects; nothing
    /// cluster-scoped).
    Only(BTreeSet<String>),
    /// Every namespace but these (and every cluster-scoped object).
    AllExcept(BTreeSet<String>),
}

impl Namespaces {
    pub fn includes(&self, ns: &str) -> bool {
        match self {
            Namespaces::Only(set) => set.contains(ns),
            Namespaces::AllExcept(set) => !set.contains(ns),
        }
    }
}

/// `--fix`: how patches are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fix {
    /// `dryRun=All`: the API server checks and admits the patch but stores nothing.
    pub dry_run: bool,
    /// Patches tried per object before giving up on one that keeps changing.
    pub attempts: usize,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// The webhook's settings the audit judges by (no migration user writes a listed object):
    /// `--unmapped`, `--scope` and `--cluster-id` (a Namespace annotated with this cluster's ID
    /// is never changed).
    pub rule: MutateSettings,
    pub namespaces: Namespaces,
    /// Objects per list request.
    pub page_size: u32,
    /// Requests in flight at most.
    pub concurrency: usize,
    pub fix: Option<Fix>,
    /// `--include-secrets`: list Secrets too (left out by default, so the audit needs no right
    /// to read them).
    pub include_secrets: bool,
}

/// Counters a progress line can show while the audit runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub types_total: AtomicUsize,
    pub types_done: AtomicUsize,
    pub objects: AtomicUsize,
    pub findings: AtomicUsize,
}

/// One object that would change (or that `--unmapped deny` refuses).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Finding {
    pub kind: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
    /// Values that would be replaced.
    pub changes: Vec<Change>,
    /// Values without a mapping, and what the webhook would do with each.
    pub unmapped: Vec<UnmappedValue>,
    /// What `--fix` did; absent without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixResult>,
    /// The webhook's patch, which `--fix` sends (and then drops).
    #[serde(skip)]
    patch: Vec<json_patch::PatchOperation>,
    /// Whether the webhook denies the object (`--unmapped deny`): `--fix` leaves it alone.
    #[serde(skip)]
    refused: bool,
}

impl Finding {
    /// What `--fix` did with it; `None` without `--fix`.
    pub fn fix_status(&self) -> Option<FixStatus> {
        self.fix.as_ref().map(|x| x.result)
    }
}

/// One value replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What kind of place: `label`, `template_annotation`, `network_policy_selector`, ...
    pub place: &'static str,
    /// Where, e.g. `metadata.labels[field.cattle.io/projectId]`.
    pub path: String,
    pub from: String,
    pub to: String,
}

/// One value without a mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnmappedValue {
    pub place: &'static str,
    pub path: String,
    pub key: String,
    pub value: String,
    /// `removed`, `kept` or `refused`.
    pub action: &'static str,
}

/// What `--fix` did with one finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FixResult {
    pub result: FixStatus,
    /// Patch requests sent.
    pub attempts: usize,
    /// The patch went with `dryRun=All`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FixStatus {
    /// Patched (or accepted with `dryRun=All`).
    Patched,
    /// Changed by someone else in between, into something that needs no rewrite.
    AlreadyClean,
    /// Deleted in between.
    Gone,
    /// Not patched: `--unmapped deny` refuses the object.
    Refused,
    /// The patch failed (the error says why), or the object kept changing.
    Failed,
}

impl FixStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FixStatus::Patched => "patched",
            FixStatus::AlreadyClean => "already clean",
            FixStatus::Gone => "gone",
            FixStatus::Refused => "refused",
            FixStatus::Failed => "failed",
        }
    }
}

/// The audit's result; also one type's, which `run` merges into the whole (sorting the findings
/// and counting the types then).
#[derive(Debug, Default)]
pub struct Report {
    /// Sorted by namespace, kind, name.
    pub findings: Vec<Finding>,
    /// Objects looked at (in the chosen namespaces).
    pub objects: usize,
    /// Resource types listed.
    pub types: usize,
    /// Types (or namespaces) not listed because the caller may not, with the reason.
    pub skipped: Vec<String>,
    /// What failed; the audit is incomplete when this is not empty.
    pub errors: Vec<String>,
}

impl Report {
    /// Exit status: 2 on errors (or a failed fix), else 1 when something would change (or is
    /// refused and so cannot be fixed), else 0.
    pub fn exit_status(&self) -> u8 {
        let any = |s: Option<FixStatus>| self.findings.iter().any(|f| f.fix_status() == s);
        if !self.errors.is_empty() || any(Some(FixStatus::Failed)) {
            return 2;
        }
        u8::from(any(None) || any(Some(FixStatus::Refused)))
    }

    /// A list or get of `at` that failed: skipped, said but not an error, when the caller may
    /// not read it or it is gone since discovery (not this caller's objects to audit).
    fn failed(&mut self, doing: &str, at: String, e: KubeError) {
        match e {
            KubeError::Forbidden(_) | KubeError::NotFound(_) | KubeError::NotAllowed(_) => {
                self.skipped.push(format!("{at}: {e}"))
            }
            _ => self.errors.push(format!("{doing} {at}: {e}")),
        }
    }
}

/// Audits every auditable type (and fixes, with [`Settings::fix`]). An error is discovery's
/// (`/api`, `/apis`): without it, nothing could be audited.
pub async fn run(
    client: &Client,
    mappings: &Mappings,
    settings: &Settings,
    progress: &Progress,
) -> Result<Report, KubeError> {
    let concurrency = settings.concurrency.max(1);
    let (types, errors) = discover(client, concurrency).await?;
    let scan = Scan {
        client,
        mappings,
        settings,
        progress,
        permits: Semaphore::new(concurrency),
        migrated_namespaces: Mutex::new(HashSet::new()),
    };
    let mut report = Report {
        errors,
        ..Report::default()
    };
    let (namespaces, others) = select(types, settings, &mut report);
    progress
        .types_total
        .store(namespaces.len() + others.len(), Ordering::Relaxed);
    let mut results: Vec<Report> = futures::stream::iter(&others)
        .map(|t| scan.scan_type(t))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    // Namespaces last: whether one holds a migrated object is known only now.
    for t in &namespaces {
        results.push(scan.scan_type(t).await);
    }
    for r in results {
        report.types += 1;
        report.objects += r.objects;
        report.findings.extend(r.findings);
        report.skipped.extend(r.skipped);
        report.errors.extend(r.errors);
    }
    report
        .findings
        .sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    report.skipped.sort();
    Ok(report)
}

/// The types to audit, Namespaces apart (they go last). Cluster-scoped types only when every
/// namespace is audited; Secrets only when asked for, said in `report` otherwise.
fn select(
    types: Vec<ResourceType>,
    settings: &Settings,
    report: &mut Report,
) -> (Vec<ResourceType>, Vec<ResourceType>) {
    let all_namespaces = matches!(settings.namespaces, Namespaces::AllExcept(_));
    let mut chosen = Vec::with_capacity(types.len());
    for t in types {
        if t.is_secret() && !settings.include_secrets {
            report
                .skipped
                .push(format!("{}: not read without --include-secrets", t.name()));
        } else if t.namespaced || t.is_namespace() || all_namespaces {
            chosen.push(t);
        }
    }
    chosen.into_iter().partition(ResourceType::is_namespace)
}

/// Expired continue tokens tolerated per list before it counts as failed.
const MAX_EXPIRED: usize = 10;

struct Scan<'a> {
    client: &'a Client,
    mappings: &'a Mappings,
    settings: &'a Settings,
    progress: &'a Progress,
    /// One per request in flight (`list_page`, `get` and `patch` each take one).
    permits: Semaphore,
    /// Namespaces that hold a migrated object.
    migrated_namespaces: Mutex<HashSet<String>>,
}

impl Scan<'_> {
    /// One type's objects, findings, and what was skipped or failed.
    async fn scan_type(&self, t: &ResourceType) -> Report {
        let mut out = Report::default();
        match &self.settings.namespaces {
            // The chosen Namespaces one by one: `get` on them is enough, no cluster-wide list.
            Namespaces::Only(set) if t.is_namespace() => {
                for name in set {
                    match self.get(t, None, name).await {
                        Ok(read) => self.audit_page(t, vec![read], &mut out).await,
                        Err(e) => out.failed("reading", format!("namespace {name}"), e),
                    }
                }
            }
            Namespaces::Only(set) if t.namespaced => {
                for ns in set {
                    self.scan_list(t, Some(ns), &mut out).await;
                }
            }
            _ => self.scan_list(t, None, &mut out).await,
        }
        self.progress.types_done.fetch_add(1, Ordering::Relaxed);
        out
    }

    /// Every page of one list of `t` (in `ns`, or everywhere).
    async fn scan_list(&self, t: &ResourceType, ns: Option<&str>, out: &mut Report) {
        let mut token: Option<String> = None;
        let mut expired = 0;
        loop {
            let (items, next) = match self.list_page(t, ns, token.take()).await {
                Ok(page) => page,
                Err(KubeError::Expired { continue_token, .. }) if expired < MAX_EXPIRED => {
                    // A long list outlived its snapshot: go on from where it stopped.
                    expired += 1;
                    token = Some(continue_token);
                    continue;
                }
                Err(e) => {
                    let at = match ns {
                        Some(ns) => format!("{} in {ns}", t.name()),
                        None => t.name(),
                    };
                    return out.failed("listing", at, e);
                }
            };
            self.audit_page(t, items, out).await;
            token = next.filter(|c| !c.is_empty());
            if token.is_none() {
                return;
            }
        }
    }

    /// Audits the objects of one page (and fixes them, with `--fix`) before the next is read.
    async fn audit_page(&self, t: &ResourceType, items: Vec<Read>, out: &mut Report) {
        // A finding keeps its object's resourceVersion, not the object.
        let found: Vec<_> = items
            .into_iter()
            .filter_map(|r| Some((self.audit_object(t, &r.object, out)?, r.resource_version)))
            .collect();
        self.progress
            .findings
            .fetch_add(found.len(), Ordering::Relaxed);
        match self.settings.fix {
            None => out.findings.extend(found.into_iter().map(|(f, _)| f)),
            Some(fix) => out.findings.extend(
                futures::stream::iter(found)
                    .map(|(finding, rv)| self.fix(t, fix, finding, rv))
                    .buffer_unordered(self.settings.concurrency.max(1))
                    .collect::<Vec<_>>()
                    .await,
            ),
        }
    }

    /// The Namespaces that hold a migrated object (still readable after a panic elsewhere).
    fn migrated_namespaces(&self) -> MutexGuard<'_, HashSet<String>> {
        self.migrated_namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one listed object and returns a finding when the webhook would change it.
    fn audit_object(&self, t: &ResourceType, obj: &Value, out: &mut Report) -> Option<Finding> {
        let (ns, name) = ns_name(obj);
        let selected = if t.is_namespace() {
            self.settings.namespaces.includes(name)
        } else {
            !t.namespaced || self.settings.namespaces.includes(ns)
        };
        if !selected {
            return None;
        }
        out.objects += 1;
        self.progress.objects.fetch_add(1, Ordering::Relaxed);
        if t.namespaced && has_migrated_annotation(obj) {
            let mut migrated = self.migrated_namespaces();
            if !migrated.contains(ns) {
                migrated.insert(ns.to_string());
            }
        }
        self.judge(t, obj)
    }

    /// What the webhook would do to an object, or `None` when it would leave it alone (out of
    /// scope, or nothing to change). A Namespace counts as migrated, beyond the webhook's rule,
    /// when it holds a migrated object.
    fn judge(&self, t: &ResourceType, obj: &Value) -> Option<Finding> {
        let (ns, name) = ns_name(obj);
        let holds_migrated = t.is_namespace() && self.migrated_namespaces().contains(name);
        let rule = &self.settings.rule;
        let d = decide_object(obj, t.is_namespace(), holds_migrated, self.mappings, rule);
        if !matches!(d.action, Action::Patch | Action::Deny) {
            return None;
        }
        let changes = d.rewrites().map(|r| Change {
            place: r.location.as_str(),
            path: display_pointer(r.pointer),
            from: r.from.to_string(),
            to: r.to.to_string(),
        });
        let unmapped = d.unmapped().map(|u| UnmappedValue {
            place: u.location.as_str(),
            path: display_pointer(u.pointer),
            key: u.key.to_string(),
            value: u.value.to_string(),
            action: match u.action {
                UnmappedAction::Removed => "removed",
                UnmappedAction::Kept => "kept",
                UnmappedAction::Denied => "refused",
            },
        });
        Some(Finding {
            kind: t.resource.kind.clone(),
            api_version: t.resource.api_version.clone(),
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            name: name.to_string(),
            changes: changes.collect(),
            unmapped: unmapped.collect(),
            fix: None,
            refused: d.action == Action::Deny,
            // Only `--fix` sends it: the report does not hold it otherwise.
            patch: self.settings.fix.map_or(Vec::new(), |_| d.patch_ops().0),
        })
    }
}

fn ns_name(obj: &Value) -> (&str, &str) {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    (s("/metadata/namespace"), s("/metadata/name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(fix: Option<FixStatus>) -> Finding {
        Finding {
            fix: fix.map(|result| FixResult {
                result,
                attempts: 1,
                dry_run: false,
                error: None,
            }),
            ..Finding::default()
        }
    }

    #[test]
    fn exit_status_follows_kubectl_diff() {
        use FixStatus::{Failed, Patched, Refused};
        // What --fix did with each finding (None: no --fix), errors, the exit status.
        let cases = [
            (vec![], 0, 0),
            (vec![None], 0, 1),
            (vec![], 1, 2),
            (vec![Some(Patched)], 0, 0),
            (vec![Some(Refused)], 0, 1),
            (vec![Some(Patched), Some(Failed)], 0, 2),
        ];
        for (fixes, errors, want) in cases {
            let report = Report {
                findings: fixes.into_iter().map(finding).collect(),
                errors: vec!["x".into(); errors],
                ..Report::default()
            };
            assert_eq!(report.exit_status(), want, "{report:?}");
        }
    }

    #[test]
    fn namespace_selection() {
        let only = Namespaces::Only(["a".to_string()].into());
        assert!(only.includes("a") && !only.includes("b"));
        let except = Namespaces::AllExcept(["kube-system".to_string()].into());
        assert!(except.includes("a") && !except.includes("kube-system"));
    }
}
