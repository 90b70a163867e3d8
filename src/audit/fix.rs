//! `--fix`: the webhook's patch, preceded by a `test` of `/metadata/resourceVersion`, so a
//! change made since the object was read fails the patch (409/422) instead of being
//! overwritten. The object is then read again, judged again and, if it still needs it, patched
//! again, a bounded number of times. For a type read metadata-only, the patch touches nothing
//! but `/metadata` (the only part read, so the only part the audit may vouch for).

use super::{Finding, Fix, FixResult, FixStatus, ResourceType, Scan};
use crate::kube_error::KubeError;

impl Scan<'_> {
    /// Patches one finding's object; returns the finding as it stands after (its changes are
    /// those of the last version read).
    pub(super) async fn fix(
        &self,
        t: &ResourceType,
        fix: Fix,
        mut finding: Finding,
        mut resource_version: Option<String>,
    ) -> Finding {
        let (ns, name) = (finding.namespace.clone(), finding.name.clone());
        let mut attempts = 0;
        let (result, error) = loop {
            if finding.refused {
                break (FixStatus::Refused, None);
            }
            let Some(rv) = resource_version.as_deref() else {
                break (
                    FixStatus::Failed,
                    Some("the object has no resourceVersion".to_string()),
                );
            };
            attempts += 1;
            let sent = self
                .patch(t, (ns.as_deref(), &name), (rv, &finding.patch), fix.dry_run)
                .await;
            match sent {
                Ok(()) => break (FixStatus::Patched, None),
                Err(KubeError::NotFound(_)) => break (FixStatus::Gone, None),
                // Changed since read: read again and judge again.
                Err(KubeError::Conflict(_)) if attempts < fix.attempts.max(1) => {}
                Err(e @ KubeError::Conflict(_)) => {
                    let why = format!("still changing after {attempts} attempt(s): {e}");
                    break (FixStatus::Failed, Some(why));
                }
                Err(e) => break (FixStatus::Failed, Some(e.to_string())),
            }
            let fresh = match self.get(t, ns.as_deref(), &name).await {
                Ok(fresh) => fresh,
                Err(KubeError::NotFound(_)) => break (FixStatus::Gone, None),
                Err(e) => break (FixStatus::Failed, Some(e.to_string())),
            };
            resource_version = fresh.resource_version;
            match self.judge(t, &fresh.object) {
                Some(next) => finding = next,
                None => break (FixStatus::AlreadyClean, None),
            }
        };
        finding.fix = Some(FixResult {
            result,
            attempts,
            dry_run: fix.dry_run,
            error,
        });
        finding.patch = Vec::new();
        finding
    }
}
