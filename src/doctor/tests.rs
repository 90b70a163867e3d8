use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;

use super::*;

fn facts(table: &str) -> Facts {
    Facts {
        mappings: Mappings::from_text(table).map_err(|e| e.to_string()),
        mappings_origin: "--project-mappings".into(),
        cluster_id: Some(("c-dst".into(), "--cluster-id".into())),
        namespace_clusters: BTreeMap::from([("c-dst".to_string(), 3)]),
        system_cluster: None,
        projects_here: BTreeSet::from(["p-b".to_string()]),
        identities: Vec::new(),
        identity_notes: Vec::new(),
        webhook: None,
        policy: Ok(None),
        table_given: true,
    }
}

fn check<'r>(r: &'r Report, name: &str) -> &'r Check {
    r.checks.iter().find(|c| c.name == name).unwrap()
}

/// Asserts that `c` came out `status`, its message saying each of `says`.
fn assert_says(c: &Check, status: Status, says: &[&str]) {
    assert_eq!(c.status, status, "{c:?}");
    for s in says {
        assert!(c.message.contains(s), "{s:?} not in {c:?}");
    }
}

const TABLE: &str = "p-a=p-b,c-src:p-a=c-dst:p-b";

#[test]
fn a_table_that_fits_passes_every_table_check() {
    let r = run(&facts(TABLE));
    for name in [
        "mappings",
        "cluster-id",
        "destination-projects",
        "direction",
    ] {
        assert_says(check(&r, name), Status::Ok, &[]);
    }
    assert_says(check(&r, "webhook"), Status::Warn, &[]);
    assert_eq!(r.exit_status(), 0);
}

#[test]
fn a_many_to_one_table_is_a_warning_naming_both_entries() {
    let r = run(&facts("p-a=p-b,p-c=p-b"));
    let c = check(&r, "mappings");
    assert_says(c, Status::Warn, &["derive --reverse"]);
    assert!(c.message.starts_with("--project-mappings: 2 entries; project-mappings[p-c]: entries \"p-a=p-b\" and \"p-c=p-b\" both map to project p-b"), "{c:?}");
    // A warning, not a failure.
    assert_eq!(r.exit_status(), 0);
}

#[test]
fn a_missing_project_is_named_and_a_reversed_table_called_reversed() {
    let r = run(&facts("p-a=p-c"));
    let missing = "p-c (no ClusterRole p-c-namespaces-edit)";
    assert_says(check(&r, "destination-projects"), Status::Fail, &[missing]);
    assert_eq!(r.exit_status(), 1);
    let r = run(&facts("p-b=p-a"));
    let says = ["reversed", "derive --reverse"];
    assert_says(check(&r, "direction"), Status::Fail, &says);
}

#[test]
fn a_cluster_id_the_namespaces_contradict_fails() {
    let mut f = facts("p-a=p-b");
    f.namespace_clusters = BTreeMap::from([("c-other".to_string(), 5), ("c-src".to_string(), 1)]);
    assert_says(check(&run(&f), "cluster-id"), Status::Fail, &["c-other"]);
}

#[test]
fn denials_name_user_verb_and_project() {
    let mut f = facts("p-a=p-b");
    f.identities = vec![IdentityAccess {
        user: "u-stork".into(),
        from: "--migration-user".into(),
        denied: vec![("manage-namespaces".into(), "project p-b".into())],
    }];
    let says = "user u-stork (--migration-user) may not manage-namespaces project p-b";
    assert_says(check(&run(&f), "migration-identity"), Status::Fail, &[says]);
}

/// The webhook's facts with nothing installed: no configuration, no Deployment.
fn no_webhook() -> WebhookFacts {
    WebhookFacts {
        configuration: None,
        service_dns: "rancher-remap.rancher-remap.svc".into(),
        serving_cert: ServingCert::Missing("none".into()),
        ready_replicas: None,
        now: 0,
    }
}

/// The rewrite webhook as the chart ships it for cluster `c-dst`, trusting `ca`.
fn hook(ca: &str) -> MutatingWebhook {
    use k8s_openapi::api::admissionregistration::v1::{MatchCondition, WebhookClientConfig};
    MutatingWebhook {
        client_config: WebhookClientConfig {
            ca_bundle: Some(k8s_openapi::ByteString(ca.as_bytes().to_vec())),
            ..Default::default()
        },
        failure_policy: Some("Fail".into()),
        match_conditions: Some(vec![MatchCondition {
            expression: "['c-dst'].exists(c, ...)".into(),
            ..Default::default()
        }]),
        timeout_seconds: Some(SHIPPED_TIMEOUT_SECONDS),
        ..Default::default()
    }
}

#[test]
fn the_serving_certificate_is_verified_for_the_service_name_and_its_expiry() {
    let g = crate::cli::certs::generate("rancher-remap", "rancher-remap", 365).unwrap();
    let other = crate::cli::certs::generate("rancher-remap", "rancher-remap", 365).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let w = |ca: &str, now: i64| WebhookFacts {
        configuration: Some(("rancher-remap".into(), hook(ca))),
        serving_cert: ServingCert::Pem(g.serving.cert.as_bytes().to_vec()),
        ready_replicas: Some(1),
        now,
        ..no_webhook()
    };
    let c = check_webhook(&w(&g.ca.cert, now), Some("c-dst"));
    assert_says(&c, Status::Ok, &[]);
    let c = check_webhook(&w(&other.ca.cert, now), Some("c-dst"));
    assert_says(&c, Status::Fail, &["does not verify"]);
    let c = check_webhook(&w(&g.ca.cert, now + 350 * 86_400), Some("c-dst"));
    assert_says(&c, Status::Warn, &["expires in"]);
    let c = check_webhook(&w(&g.ca.cert, now), Some("c-elsewhere"));
    assert_says(&c, Status::Fail, &["does not carry cluster ID c-elsewhere"]);
}

#[test]
fn without_a_table_the_table_checks_are_skipped_and_mappings_fails() {
    let mut f = facts("p-a=p-b");
    f.mappings = Err("not found".into());
    f.mappings_origin = "ConfigMap rancher-remap/rancher-remap-mappings".into();
    let r = run(&f);
    let says = ["rancher-remap-mappings: not found", "derive"];
    assert_says(check(&r, "mappings"), Status::Fail, &says);
    let skipped = [
        "cluster-id",
        "destination-projects",
        "direction",
        "migration-identity",
    ];
    for name in skipped {
        assert_eq!(check(&r, name).status, Status::Warn, "{name}");
    }
    assert_eq!(r.exit_status(), 1);
    let names: Vec<&str> = r.checks.iter().map(|c| c.name).collect();
    assert_eq!(names[0], "mappings");
    assert_eq!(names[1..5], skipped);
    assert_eq!(names[5..], ["webhook"]);
}

#[test]
fn kube_system_names_this_cluster_even_when_migrated_namespaces_outnumber_its_own() {
    let mut f = facts(TABLE);
    // Right after a migration that was not rewritten: the source's Namespaces are the most.
    f.namespace_clusters = BTreeMap::from([("c-dst".to_string(), 2), ("c-src".to_string(), 40)]);
    f.system_cluster = Some("c-dst".into());
    let r = run(&f);
    assert_says(check(&r, "cluster-id"), Status::Ok, &[]);
    assert_says(check(&r, "direction"), Status::Ok, &[]);
    // Nothing annotated to compare with: a warning, not an ok.
    f.namespace_clusters.clear();
    f.system_cluster = None;
    assert_eq!(check(&run(&f), "cluster-id").status, Status::Warn);
}

/// export-policy's objects for `table` and cluster `c-dst`, as doctor reads them.
fn exported(table: &str) -> PolicyFacts {
    let settings = crate::policy::Settings {
        namespace: "rancher-remap".into(),
        cluster_id: "c-dst".into(),
        migration_users: Vec::new(),
        unmapped: crate::rewrite::UnmappedPolicy::Drop,
    };
    let m = Mappings::from_text(table).unwrap();
    let objects = crate::policy::export(&m, &settings).unwrap();
    let (policies, bindings) = objects
        .into_iter()
        .map(|o| serde_json::from_value::<kube::core::DynamicObject>(o).unwrap())
        .partition(|o| o.types.as_ref().unwrap().kind == "MutatingAdmissionPolicy");
    PolicyFacts { policies, bindings }
}

#[test]
fn the_policies_are_checked_bound_with_this_clusters_id_and_the_table() {
    let m = Mappings::from_text(TABLE).unwrap();
    let origin = Some((&m, "--project-mappings"));
    let c = check_policy(&exported(TABLE), Some("c-dst"), origin);
    let says = ["a table of 4 keys equal to --project-mappings's"];
    assert_says(&c, Status::Ok, &says);

    let c = check_policy(&exported(TABLE), Some("c-elsewhere"), origin);
    assert_says(&c, Status::Fail, &["does not carry cluster ID c-elsewhere"]);

    // Another table than the one given: a warning (the policies keep their own copy).
    let c = check_policy(&exported("p-a=p-c"), Some("c-dst"), origin);
    let says = ["does not hold the table of --project-mappings"];
    assert_says(&c, Status::Warn, &says);

    // Export-policy's objects edited as `edit` does fail, saying each of `says`.
    let fails = |edit: fn(&mut PolicyFacts), says: &[&str]| {
        let mut p = exported(TABLE);
        edit(&mut p);
        assert_says(&check_policy(&p, Some("c-dst"), None), Status::Fail, says);
    };
    let unbound = |p: &mut PolicyFacts| {
        p.bindings.remove(1);
        p.bindings[0].data["spec"]["paramRef"] = serde_json::json!({"name": "params"});
    };
    let says = [
        "no MutatingAdmissionPolicyBinding rancher-remap-workloads",
        "does not bind policy rancher-remap-metadata alone",
    ];
    fails(unbound, &says);

    // Narrowed to nothing, or failing open: not export-policy's.
    let edited = |p: &mut PolicyFacts| {
        p.bindings[0].data["spec"]["matchResources"] =
            serde_json::json!({"objectSelector": {"matchLabels": {"nothing": "matches"}}});
        p.policies[1].data["spec"]["failurePolicy"] = serde_json::json!("Ignore");
    };
    let says = [
        "matchResources true",
        "MutatingAdmissionPolicy rancher-remap-workloads does not fail closed",
    ];
    fails(edited, &says);

    let old = |p: &mut PolicyFacts| {
        p.policies.remove(1);
        p.policies[0].data["spec"]["variables"] = serde_json::json!([]);
    };
    let says = [
        "MutatingAdmissionPolicy rancher-remap-workloads is missing",
        "holds no table of its own",
    ];
    fails(old, &says);
}

#[test]
fn the_policies_alone_are_the_rewrite_path_and_with_the_webhook_both_are_checked() {
    let mut f = facts(TABLE);
    f.policy = Ok(Some(exported(TABLE)));
    // No webhook configuration and no Deployment here: the policies alone.
    f.webhook = Some(no_webhook());
    let r = run(&f);
    assert!(r.checks.iter().all(|c| c.name != "webhook"), "{r:?}");
    assert_says(check(&r, "policy"), Status::Ok, &[]);
    assert_eq!(r.exit_status(), 0);

    // No mapping ConfigMap beside the policies: nothing to compare, not a fault.
    f.mappings = Err("not found".into());
    f.mappings_origin = "ConfigMap rancher-remap/rancher-remap-mappings".into();
    f.table_given = false;
    let r = run(&f);
    let says = ["give --mappings-file"];
    assert_says(check(&r, "mappings"), Status::Warn, &says);
    assert_eq!(r.exit_status(), 0);

    // Both: the webhook is checked too (here: no ready replica).
    f.webhook.as_mut().unwrap().ready_replicas = Some(0);
    let r = run(&f);
    assert_says(check(&r, "webhook"), Status::Fail, &[]);
    assert_says(check(&r, "policy"), Status::Ok, &[]);
    // A table that cannot be read beside a webhook still fails.
    assert_says(check(&r, "mappings"), Status::Fail, &[]);
}
