//! `export-policy` through the real apiserver: the MutatingAdmissionPolicies it prints, applied
//! with kubectl, store what the webhook stores. The same writes (every kind, marked and not, by
//! the migration user and by the admin, CREATE and UPDATE, and the Namespaces of SPEC §7) go
//! first through the policies alone, then through the chart's webhook alone; each is compared
//! with the engine's offline answer, and the two stored objects with each other, at every place
//! a project ID was sent.

use std::time::Duration;

use serde_json::{json, Value};

use super::install::{Install, CLUSTER_ID, TABLE};
use super::objects::{self, every_kind, places_of, MIGRATED, PID, SOURCE_IDS};
use super::plane::{plane, run_ok, ControlPlane, ADMIN, STORK};
use super::rewrites::{mappings_configmap, offline_rewrite, until_the_webhook_answers};
use crate::common::eventually;

/// The namespace the exported policies leave out (an install's).
const PARAMS_NS: &str = "rr-policy-params";
/// Where the webhook is installed in the second phase (one of the suite's HOMES).
const HOOK_NS: &str = "rr-policy";
/// Where the chart installs the policies (and the webhook beside them; one of the HOMES).
const CHART_NS: &str = "rr-policy-chart";
/// A second spelling of the key (any project-ID key counts) and values no entry maps.
const OTHER_KEY: &str = "management.cattle.io/projectid";
const UNMAPPED: &[&str] = &["p-zz999", "c-7gh2k:p-zz999"];
/// How many of the engine's generated objects each phase writes.
const GENERATED: usize = 120;

/// Every value the writes below carry at a place.
fn ids() -> Vec<&'static str> {
    let mut ids = SOURCE_IDS.to_vec();
    ids.extend(UNMAPPED);
    // A destination value (stays), and this cluster's own Namespace's annotation.
    ids.extend(["p-gh34k", "c-m-4kq8z9rt:p-ab12c"]);
    ids
}

/// `objects::every_kind`, with more in the metadata of each object and of its pod template: a
/// project-ID key in another spelling, an unmapped label and annotation (dropped), a
/// destination value (kept).
fn objects(ns: &str, marked: bool, prefix: &str) -> Vec<Value> {
    every_kind(ns, marked)
        .into_iter()
        .map(|mut o| {
            let name = format!("{prefix}{}", o["metadata"]["name"].as_str().unwrap());
            o["metadata"]["name"] = json!(name);
            for meta in ["/metadata", "/spec/template/metadata", "/template/metadata"] {
                if let Some(m) = o.pointer_mut(meta) {
                    m["labels"]["field.cattle.io/projectID"] = json!("p-zz999");
                    m["labels"]["cattle.io/projectId"] = json!("p-gh34k");
                    m["annotations"][OTHER_KEY] = json!("c-7gh2k:p-zz999");
                    m["annotations"]["Field.Cattle.IO/PROJECTID"] = json!("c-7gh2k:p-cd56e");
                }
            }
            o
        })
        .collect()
}

/// The Namespaces of SPEC §7, named with `prefix`: (object, writer is Stork, rewritten).
fn namespaces(prefix: &str) -> Vec<(Value, bool, bool)> {
    let namespace = |name: &str, annotation: Option<&str>| {
        let mut meta = json!({"name": format!("{prefix}{name}"), "labels": {PID: "p-ab12c"}});
        if let Some(a) = annotation {
            meta["annotations"] = json!({PID: a});
        }
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    };
    vec![
        // Claims a source cluster's project: rewritten, whoever writes it.
        (namespace("moved", Some("c-7gh2k:p-ab12c")), false, true),
        // This cluster's own: never, not even by the migration user.
        (
            namespace("own", Some(&format!("{CLUSTER_ID}:p-ab12c"))),
            true,
            false,
        ),
        // The label alone: only when the migration user writes it.
        (namespace("label-by-stork", None), true, true),
        (namespace("label-by-admin", None), false, false),
    ]
}

/// One write and what the apiserver stored.
struct Written {
    what: String,
    sent: Value,
    stored: Value,
    /// Whether the webhook's scope admits it (else it must be stored as sent).
    rewritten: bool,
}

/// The writes of both phases, in `app` (made here) and Namespaces named with `prefix`.
async fn write_everything(plane: &ControlPlane, app: &str, prefix: &str) -> Vec<Written> {
    let admin = plane.client(ADMIN).await;
    let stork = plane.client(STORK).await;
    let mut out = Vec::new();
    let mut record = |what: String, sent: &Value, stored: Value, rewritten: bool| {
        out.push(Written {
            what,
            sent: sent.clone(),
            stored,
            rewritten,
        })
    };

    // CREATE: marked by Stork, marked by the admin; unmarked, by Stork (a migration user
    // counts for Namespaces only, as the shipped webhook's matchConditions send them: Stork
    // marks every other object it migrates) and by the admin: left alone.
    let cases: [(&str, bool, &kube::Client, bool); 4] = [
        ("stork-marked-", true, &stork, true),
        ("admin-marked-", true, &admin, true),
        ("stork-plain-", false, &stork, false),
        ("admin-plain-", false, &admin, false),
    ];
    for (name, marked, who, rewritten) in cases {
        for sent in objects(app, marked, name) {
            let stored = objects::create(who, &sent, false)
                .await
                .unwrap_or_else(|e| panic!("{name}{}: {e}", sent["kind"]));
            record(
                format!("CREATE {name}{}", sent["kind"]),
                &sent,
                stored,
                rewritten,
            );
        }
    }

    // UPDATE of unmarked objects the admin created: by the admin with the mark; by Stork and by
    // the admin as they are (left alone). A Pod's spec and a Job's template are
    // immutable: the apiserver refuses an UPDATE that rewrites them, as it would the same
    // change made by hand (Stork re-creates instead).
    let updates: [(&str, &kube::Client, bool, bool); 3] = [
        ("admin-marks-", &admin, true, true),
        ("stork-updates-", &stork, false, false),
        ("admin-updates-", &admin, false, false),
    ];
    for (name, who, mark, rewritten) in updates {
        for sent in objects(app, false, name)
            .iter()
            .filter(|o| o["kind"] != "Pod" && o["kind"] != "Job")
        {
            objects::create(&admin, sent, false).await.unwrap();
            // A controller may write the status in between (a 409): read again and retry.
            let mut attempts = 0;
            let (now, stored) = loop {
                let mut now = objects::get(&admin, sent).await;
                if mark {
                    now["metadata"]["annotations"][MIGRATED] = json!("true");
                }
                match objects::replace(who, &now).await {
                    Err(kube::Error::Api(e)) if e.code == 409 && attempts < 10 => attempts += 1,
                    answer => {
                        let stored =
                            answer.unwrap_or_else(|e| panic!("UPDATE {name}{}: {e}", sent["kind"]));
                        break (now, stored);
                    }
                }
            };
            record(
                format!("UPDATE {name}{}", sent["kind"]),
                &now,
                stored,
                rewritten,
            );
        }
    }

    for (ns, by_stork, rewritten) in namespaces(prefix) {
        let who = if by_stork { &stork } else { &admin };
        let stored = objects::create(who, &ns, false).await.unwrap();
        record(
            format!("CREATE Namespace {}", ns["metadata"]["name"]),
            &ns,
            stored,
            rewritten,
        );
    }
    out
}

/// The engine's generated objects (`properties::object`, its proptest strategy, drawn
/// deterministically), with the suite's IDs for the properties' own, in `ns`; Namespaces named
/// with `prefix`. A Deployment's selector is made to match its template, so that more of them
/// are valid.
fn generated(ns: &str, prefix: &str, n: usize) -> Vec<Value> {
    use proptest::strategy::{Strategy, ValueTree};
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = crate::properties::object(true);
    (0..n)
        .map(|i| {
            let mut text = strategy
                .new_tree(&mut runner)
                .unwrap()
                .current()
                .to_string();
            for (from, to) in [
                // What the apiserver would refuse whatever the rewrite: a key with `~`, a
                // value with a space.
                ("a~b.cattle.io", "a-b.cattle.io"),
                ("Not Valid", "not-valid"),
                ("c-s:", "c-7gh2k:"),
                ("c-d:", "c-m-4kq8z9rt:"),
                ("p-src1", "p-ab12c"),
                ("p-src2", "p-cd56e"),
                ("p-dst1", "p-xy99z"),
                ("p-dst2", "p-gh34k"),
            ] {
                text = text.replace(from, to);
            }
            let mut o: Value = serde_json::from_str(&text).unwrap();
            // A field the schema does not have is not stored (the properties' `other`).
            o.as_object_mut().unwrap().remove("other");
            let namespace = o["kind"] == "Namespace";
            let meta = &mut o["metadata"];
            if namespace {
                meta.as_object_mut().unwrap().remove("namespace");
                meta["name"] = json!(format!("{prefix}gen-{i}"));
            } else {
                meta["namespace"] = json!(ns);
                meta["name"] = json!(format!("gen-{i}"));
            }
            valid_labels(&mut o);
            if o["kind"] == "ConfigMap" {
                o["data"] = json!({"k": "v"});
            }
            if o["kind"] == "CronJob" {
                o["spec"]["schedule"] = json!("0 0 * * *");
                o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] =
                    json!("Never");
            }
            if o["kind"] == "Deployment" {
                o["spec"]["selector"] = json!({"matchLabels": {"gen": "yes"}});
                o["spec"]["template"]["metadata"]["labels"]["gen"] = json!("yes");
            }
            o
        })
        .collect()
}

/// Label values cannot hold `:` (Rancher puts the project form in labels): the project part
/// of each, in labels, `matchLabels` and expression values; no values for `Exists`, one for
/// an `In` without any.
fn valid_labels(v: &mut Value) {
    let project = |v: &mut Value| {
        if let Some(s) = v.as_str() {
            let p = s.rsplit(':').next().unwrap_or_default().to_string();
            *v = json!(p);
        }
    };
    match v {
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                match k.as_str() {
                    "labels" | "matchLabels" => item
                        .as_object_mut()
                        .into_iter()
                        .flatten()
                        .for_each(|(_, v)| project(v)),
                    "matchExpressions" => {
                        for e in item.as_array_mut().into_iter().flatten() {
                            match e["operator"].as_str() {
                                Some("Exists" | "DoesNotExist") => {
                                    e.as_object_mut().unwrap().remove("values");
                                }
                                _ if e["values"] == json!([]) => e["values"] = json!(["p-ab12c"]),
                                _ => {}
                            }
                            let values = e.get_mut("values").and_then(Value::as_array_mut);
                            values.into_iter().flatten().for_each(project);
                        }
                    }
                    _ => valid_labels(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(valid_labels),
        _ => {}
    }
}

/// The values the generated objects carry at places.
const GENERATED_IDS: &[&str] = &[
    "p-ab12c",
    "p-cd56e",
    "c-7gh2k:p-ab12c",
    "c-7gh2k:p-cd56e",
    "p-xy99z",
    "c-m-4kq8z9rt:p-gh34k",
    "p-same",
    "p-unknown",
    "c-x:p-ab12c",
    "p-gh34k",
    "",
    "not-valid",
];

/// What the engine makes the admin's write of `obj` (the webhook's scope rule and rewrite, as
/// the library has them): the object itself when out of scope.
fn engine_answer(obj: &Value) -> Value {
    use rancher_remap::mapping::objects::Mappings;
    use rancher_remap::rewrite::{decide, walk, MutateSettings, RequestFacts};
    let mappings = Mappings::from_text(TABLE).unwrap();
    let settings = MutateSettings {
        migration_users: [STORK.to_string()].into(),
        cluster_id: Some(CLUSTER_ID.into()),
        ..MutateSettings::default()
    };
    let facts = RequestFacts {
        is_namespace: obj["kind"] == "Namespace",
        username: ADMIN,
        ..RequestFacts::default()
    };
    let walked = walk(obj, &mappings.table).unwrap();
    let decision = decide(&facts, walked, &mappings, &settings);
    decision.apply(obj).unwrap()
}

/// The admin's server-side dry-run CREATE of each generated object: what the apiserver
/// answered (an error's text when it refused, as the engine's answer may be invalid).
async fn write_generated(plane: &ControlPlane, objects: &[Value]) -> Vec<Result<Value, String>> {
    let admin = plane.client(ADMIN).await;
    let mut out = Vec::new();
    for o in objects {
        out.push(
            objects::create(&admin, o, true)
                .await
                .map_err(|e| e.to_string()),
        );
    }
    out
}

/// `got` holds what `want` holds at every place of `sent` that carried one of `ids`; the number
/// of places compared.
fn assert_same_at_places(
    what: &str,
    sent: &Value,
    ids: &[&str],
    got: &Value,
    want: &Value,
) -> usize {
    let places = places_of(sent, ids);
    assert!(!places.is_empty(), "{what}: no place to check");
    for at in &places {
        assert_eq!(
            got.pointer(at),
            want.pointer(at),
            "{what}{at}: got {:#}, want {:#}",
            got["metadata"],
            want["metadata"]
        );
    }
    places.len()
}

/// Each accepted generated write stored as the engine answers it; the number accepted.
fn assert_generated_as_the_engine_says(sent: &[Value], answers: &[Result<Value, String>]) -> usize {
    let mut accepted = 0;
    for (o, answer) in sent.iter().zip(answers) {
        let Ok(stored) = answer else { continue };
        accepted += 1;
        let what = format!("generated {o}: ");
        assert_same_at_places(&what, o, GENERATED_IDS, stored, &engine_answer(o));
    }
    accepted
}

/// Each write stored as the engine rewrites it (or as sent, when out of scope), at every place
/// a project ID was sent.
fn assert_as_the_engine_says(written: &[Written]) {
    let ids = ids();
    let marked: Vec<Value> = written.iter().map(|w| w.sent.clone()).collect();
    let engine = offline_rewrite(&marked);
    let mut compared = 0;
    for (w, rewritten) in written.iter().zip(&engine) {
        let want = if w.rewritten { rewritten } else { &w.sent };
        compared += assert_same_at_places(&w.what, &w.sent, &ids, &w.stored, want);
        if w.rewritten {
            assert_ne!(
                w.sent, *rewritten,
                "{}: the engine changes nothing here",
                w.what
            );
        }
    }
    eprintln!(
        "{} writes, {compared} places as the engine says",
        written.len()
    );
}

/// Removes the exported policies and bindings (cluster-wide: they see every namespace), even
/// when the test fails half-way.
struct Policies<'p>(&'p ControlPlane);

impl Policies<'_> {
    fn delete(&self) -> std::process::Output {
        self.0
            .kubectl(ADMIN)
            .args([
                "delete",
                "mutatingadmissionpolicies,mutatingadmissionpolicybindings",
                "-l",
                "app.kubernetes.io/name=rancher-remap",
                "--ignore-not-found",
            ])
            .output()
            .unwrap()
    }
}

impl Drop for Policies<'_> {
    fn drop(&mut self) {
        let _ = self.delete();
    }
}

/// `export-policy` with `source` (the flags that give the table, and any others), this
/// cluster, Stork as migration user, leaving out `params_ns`: the YAML stream.
fn export(params_ns: &str, source: &[&str]) -> Vec<u8> {
    let mut args = vec![
        "export-policy",
        "--cluster-id",
        CLUSTER_ID,
        "--migration-user",
        STORK,
        "-n",
        params_ns,
    ];
    args.extend(source);
    let out = crate::common::run(&args, "");
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    out.stdout
}

/// `export-policy` for `table` (and `extra` flags), leaving out `params_ns`, applied with
/// kubectl.
fn export_and_apply(plane: &ControlPlane, params_ns: &str, table: &str, extra: &[&str]) {
    let mut source = vec!["--project-mappings", table];
    source.extend(extra);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), export(params_ns, &source)).unwrap();
    run_ok(plane.kubectl(ADMIN).arg("apply").arg("-f").arg(file.path()));
}

fn create_namespace(plane: &ControlPlane, ns: &str) {
    run_ok(plane.kubectl(ADMIN).args(["create", "namespace", ns]));
}

/// Until a migrated PodTemplate's affinity is rewritten in `ns` (dry run). The policies are two,
/// and the API server starts applying each on its own: a ConfigMap's labels rewritten
/// (`until_the_webhook_answers`) says only that the metadata policy is in force.
async fn until_pod_templates_are_rewritten(client: &kube::Client, ns: &str) {
    let term = json!({"topologyKey": "kubernetes.io/hostname",
                      "namespaceSelector": {"matchLabels": {PID: "p-ab12c"}}});
    let probe = json!({"apiVersion": "v1", "kind": "PodTemplate",
        "metadata": {"name": "probe", "namespace": ns, "annotations": {MIGRATED: "true"}},
        "template": {"spec": {"containers": [{"name": "app", "image": "app"}],
                              "affinity": {"podAffinity": {
                                  "requiredDuringSchedulingIgnoredDuringExecution": [term]}}}}});
    let at = format!(
        "/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/0/namespaceSelector/matchLabels/{}",
        PID.replace('/', "~1")
    );
    eventually(
        "pod templates rewritten",
        Duration::from_secs(60),
        async || {
            objects::create(client, &probe, true)
                .await
                .is_ok_and(|stored| stored.pointer(&at) == Some(&json!("p-xy99z")))
        },
    )
    .await;
}

/// Every write of a phase, in `app` (made here, once the rewrite answers there), Namespaces
/// named with `prefix`: the suite's objects and the engine's generated ones, each checked
/// against the engine.
async fn every_write(
    plane: &ControlPlane,
    app: &str,
    prefix: &str,
) -> (Vec<Written>, Vec<Value>, Vec<Result<Value, String>>) {
    create_namespace(plane, app);
    let stork = plane.client(STORK).await;
    until_the_webhook_answers(&stork, app).await;
    until_pod_templates_are_rewritten(&stork, app).await;
    objects::until_default_service_account(&plane.client(ADMIN).await, app).await;
    let written = write_everything(plane, app, prefix).await;
    assert_as_the_engine_says(&written);
    let generated = generated(app, prefix, GENERATED);
    let answers = write_generated(plane, &generated).await;
    let accepted = assert_generated_as_the_engine_says(&generated, &answers);
    eprintln!("{accepted} of {GENERATED} generated objects accepted, as the engine says");
    (written, generated, answers)
}

/// What the policies store, the CEL cost limit, a table change in place, `--unmapped keep`;
/// then the same writes through the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_policy_stores_what_the_webhook_stores() {
    let (plane, _turn) = plane().await;
    let minor: u32 = plane.minor().trim_start_matches("1.").parse().unwrap();
    if minor < 36 {
        eprintln!(
            "skipped on {}: MutatingAdmissionPolicy admissionregistration.k8s.io/v1 is not served \
             before 1.36 (1.32 has only v1alpha1, off by default, and its CEL has no flatten())",
            plane.version
        );
        return;
    }
    let admin = plane.client(ADMIN).await;
    let stork = plane.client(STORK).await;

    // Phase 1: the policies alone.
    create_namespace(plane, PARAMS_NS);
    let policies = Policies(plane);
    export_and_apply(plane, PARAMS_NS, TABLE, &[]);
    let app = "rr-policy-app";
    let (by_policy, generated_by_policy, policy_answers) =
        every_write(plane, app, "rr-policy-ns-").await;
    let accepted = policy_answers.iter().filter(|a| a.is_ok()).count();
    assert!(
        accepted >= GENERATED * 9 / 10,
        "too few generated objects accepted"
    );
    large_objects_within_the_cel_cost_limit(plane).await;

    a_table_change_is_a_policy_change(plane, &stork, app, policies).await;

    // Phase 2: the chart's webhook alone, the same writes.
    let install = Install::helm(
        plane,
        HOOK_NS,
        &[
            &format!("clusterId={CLUSTER_ID}"),
            &format!("migrationUsers={{{STORK}}}"),
        ],
    );
    objects::create(&admin, &mappings_configmap(HOOK_NS, TABLE), false)
        .await
        .unwrap();
    // export-policy reads the same table through the apiserver: the same policies.
    let kubeconfig = plane.kubeconfig(ADMIN);
    let configmap = format!("{HOOK_NS}/rancher-remap-mappings");
    let from_cluster = export(
        PARAMS_NS,
        &[
            "--mappings-configmap",
            &configmap,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    assert_eq!(
        from_cluster,
        export(PARAMS_NS, &["--project-mappings", TABLE])
    );
    let _server = install.start_replica(0, &[]).await;
    let (by_webhook, _, webhook_answers) =
        every_write(plane, "rr-policy-hook-app", "rr-policy-hook-ns-").await;

    let compared = assert_policy_and_webhook_agree(
        (&by_policy, &generated_by_policy, &policy_answers),
        (&by_webhook, &webhook_answers),
    );
    eprintln!("policy and webhook agree at {compared} places");
}

/// A table change is a policy change, applied in place: p-ab12c now maps elsewhere; then
/// `--unmapped keep`; then the policies deleted, and writes pass unrewritten.
async fn a_table_change_is_a_policy_change(
    plane: &ControlPlane,
    stork: &kube::Client,
    app: &str,
    policies: Policies<'_>,
) {
    let changed = TABLE.replace("p-xy99z", "p-new11");
    export_and_apply(plane, PARAMS_NS, &changed, &[]);
    let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "probe", "namespace": app,
                     "labels": {PID: "p-ab12c", "field.cattle.io/projectID": "p-zz999"},
                     "annotations": {MIGRATED: "true"}}});
    eventually("the changed table", Duration::from_secs(30), async || {
        objects::create(stork, &probe, true)
            .await
            .is_ok_and(|s| s["metadata"]["labels"] == json!({PID: "p-new11"}))
    })
    .await;
    // --unmapped keep: the unmapped label stays (a policy change, seen by the apiserver soon).
    export_and_apply(plane, PARAMS_NS, &changed, &["--unmapped", "keep"]);
    eventually("--unmapped keep", Duration::from_secs(30), async || {
        objects::create(stork, &probe, true).await.is_ok_and(|s| {
            s["metadata"]["labels"]
                == json!({PID: "p-new11", "field.cattle.io/projectID": "p-zz999"})
        })
    })
    .await;
    let gone = policies.delete();
    assert!(
        gone.status.success(),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    eventually("the policies gone", Duration::from_secs(30), async || {
        objects::create(stork, &probe, true)
            .await
            .is_ok_and(|s| s["metadata"]["labels"][PID] == "p-ab12c")
    })
    .await;
    drop(policies);
}

type Answers = Vec<Result<Value, String>>;

/// The objects stored by the policies and by the webhook, field by field at every place;
/// returns how many places were compared.
fn assert_policy_and_webhook_agree(
    (by_policy, generated_by_policy, policy_answers): (&[Written], &[Value], &Answers),
    (by_webhook, webhook_answers): (&[Written], &Answers),
) -> usize {
    assert_eq!(by_policy.len(), by_webhook.len());
    let ids = ids();
    let mut compared = 0;
    for (p, w) in by_policy.iter().zip(by_webhook) {
        assert_eq!(
            p.what.replace("rr-policy-ns-", ""),
            w.what.replace("rr-policy-hook-ns-", "")
        );
        let what = format!("{} (policy, webhook)", p.what);
        compared += assert_same_at_places(&what, &p.sent, &ids, &p.stored, &w.stored);
    }
    for ((o, p), w) in generated_by_policy
        .iter()
        .zip(policy_answers)
        .zip(webhook_answers)
    {
        match (p, w) {
            (Ok(p), Ok(w)) => {
                let what = format!("generated {o} (policy, webhook): ");
                compared += assert_same_at_places(&what, o, GENERATED_IDS, p, w);
            }
            (Err(_), Err(_)) => {}
            (p, w) => panic!("generated {o:#}: the policy answered {p:?}, the webhook {w:?}",),
        }
    }
    compared
}

/// A migrated Deployment whose pod template has `n` required podAffinity terms and `n`
/// preferred podAntiAffinity terms, each selecting Namespaces by project with `matchLabels` and
/// a two-value `In` expression (6·n project IDs).
fn affinity_terms(n: usize) -> Value {
    let term = json!({"labelSelector": {"matchLabels": {"app": "db"}},
        "topologyKey": "kubernetes.io/hostname",
        "namespaceSelector": {"matchLabels": {PID: "p-ab12c"},
            "matchExpressions": [{"key": PID, "operator": "In", "values": ["p-ab12c", "p-cd56e"]}]}});
    let spec = json!({"containers": [{"name": "app", "image": "registry.example.com/app:1"}],
        "affinity": {
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": vec![term.clone(); n]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution":
                vec![json!({"weight": 1, "podAffinityTerm": term}); n]}}});
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "large", "namespace": COST_NS, "annotations": {MIGRATED: "true"}},
        "spec": {"selector": {"matchLabels": {"app": "large"}},
                 "template": {"metadata": {"labels": {"app": "large"}}, "spec": spec}}})
}

/// A migrated NetworkPolicy with `rules` ingress and as many egress rules, each with `peers`
/// peers selecting Namespaces by project (`matchLabels` and a one-value `In`: 4·rules·peers IDs).
fn network_policy(rules: usize, peers: usize) -> Value {
    let peer = json!({"namespaceSelector": {"matchLabels": {PID: "p-ab12c"},
        "matchExpressions": [{"key": PID, "operator": "In", "values": ["p-cd56e"]}]}});
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "large", "namespace": COST_NS, "annotations": {MIGRATED: "true"}},
        "spec": {"podSelector": {},
                 "ingress": vec![json!({"from": vec![peer.clone(); peers]}); rules],
                 "egress": vec![json!({"to": vec![peer; peers]}); rules]}})
}

/// A migrated ConfigMap with `n` project-ID labels (`kN.cattle.io/projectId`).
fn labels(n: usize) -> Value {
    let labels: serde_json::Map<String, Value> = (0..n)
        .map(|i| (format!("k{i}.cattle.io/projectId"), json!("p-ab12c")))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "large", "namespace": COST_NS, "labels": labels,
                     "annotations": {MIGRATED: "true"}}})
}

/// Where the cost checks write.
const COST_NS: &str = "rr-policy-cost";

/// The shapes of docs/admission-policy.md's cost table: a name, the object of size `n`, and
/// the size the docs say is admitted.
type Shape = (&'static str, fn(usize) -> Value, usize);
const SHAPES: &[Shape] = &[
    (
        "affinity terms (n required + n preferred)",
        affinity_terms,
        700,
    ),
    (
        "NetworkPolicy peers (n in one ingress + n in one egress rule)",
        |n| network_policy(1, n),
        1_000,
    ),
    (
        "NetworkPolicy rules (n ingress + n egress, one peer each)",
        |n| network_policy(n, 1),
        1_000,
    ),
    ("project-ID labels", labels, 6_000),
];

/// The apiserver's answer to Stork's server-side dry-run CREATE of `obj` (a refusal's message
/// without the expression it quotes, which is long).
async fn dry_run(stork: &kube::Client, obj: &Value) -> Result<Value, String> {
    objects::create(stork, obj, true).await.map_err(|e| {
        let e = e.to_string();
        match (e.find("expression '"), e.rfind("' resulted in")) {
            (Some(start), Some(end)) if start < end => {
                format!("{}…{}", &e[..start + 12], &e[end..])
            }
            _ => e,
        }
    })
}

/// The CEL cost limit: objects of the sizes the docs give are admitted and rewritten whole;
/// twice as large is refused with the cost named (failurePolicy Fail), never stored with its
/// source IDs. `RANCHER_REMAP_POLICY_COST_SEARCH=1` also bisects for the largest size admitted
/// of each shape and prints it (the figures in docs/admission-policy.md and BENCHMARKS.md).
async fn large_objects_within_the_cel_cost_limit(plane: &ControlPlane) {
    let stork = plane.client(STORK).await;
    create_namespace(plane, COST_NS);
    let search = std::env::var_os("RANCHER_REMAP_POLICY_COST_SEARCH").is_some();
    for (shape, make, documented) in SHAPES {
        let sent = make(*documented);
        let stored = dry_run(&stork, &sent)
            .await
            .unwrap_or_else(|e| panic!("{shape}, n = {documented}: {e}"));
        let sources = places_of(&sent, &["p-ab12c", "p-cd56e"]);
        assert!(sources.len() >= *documented, "{shape}");
        for at in &sources {
            let now = stored.pointer(at).and_then(Value::as_str);
            assert!(
                matches!(now, Some("p-xy99z" | "p-gh34k")),
                "{shape}, n = {documented}: {at} is {now:?}"
            );
        }
        let over = dry_run(&stork, &make(documented * 2)).await;
        assert!(
            over.as_ref()
                .is_err_and(|e| e.contains("cost limit exceeded")),
            "{shape}, n = {}: {over:?}",
            documented * 2
        );
        if search {
            let (mut ok, mut refused) = (*documented, documented * 2);
            while refused - ok > 1 {
                let mid = (ok + refused) / 2;
                match dry_run(&stork, &make(mid)).await {
                    Ok(_) => ok = mid,
                    Err(_) => refused = mid,
                }
            }
            let bytes = make(ok).to_string().len();
            eprintln!(
                "{shape}: largest admitted n = {ok} ({} project IDs, {bytes} bytes of JSON)",
                places_of(&make(ok), &["p-ab12c", "p-cd56e"]).len()
            );
        }
    }
}

/// A migrated write the chart's policies (and webhook) must rewrite, and the engine's answer.
struct Probe {
    stork: kube::Client,
    sent: Value,
    want: Value,
}

impl Probe {
    async fn new(plane: &ControlPlane, app: &str) -> Probe {
        create_namespace(plane, app);
        objects::until_default_service_account(&plane.client(ADMIN).await, app).await;
        let sent = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "probe", "namespace": app,
                         "labels": {PID: "p-ab12c", "field.cattle.io/projectID": "p-zz999"},
                         "annotations": {MIGRATED: "true", PID: "c-7gh2k:p-cd56e"}}});
        let want = offline_rewrite(std::slice::from_ref(&sent)).remove(0);
        assert_ne!(want["metadata"], sent["metadata"]);
        let stork = plane.client(STORK).await;
        Probe { stork, sent, want }
    }

    /// Until Stork's dry-run write is stored as the engine (the webhook) answers it.
    async fn rewritten(&self, what: &str) {
        let meta = &self.want["metadata"];
        eventually(what, Duration::from_secs(30), async || {
            objects::create(&self.stork, &self.sent, true)
                .await
                .is_ok_and(|s| {
                    s["metadata"]["labels"] == meta["labels"]
                        && s["metadata"]["annotations"] == meta["annotations"]
                })
        })
        .await;
    }

    /// Until it is stored as sent (nothing rewrites it).
    async fn left_alone(&self, what: &str) {
        eventually(what, Duration::from_secs(30), async || {
            objects::create(&self.stork, &self.sent, true)
                .await
                .is_ok_and(|s| s["metadata"]["labels"][PID] == "p-ab12c")
        })
        .await;
    }
}

/// `helm install` of the chart in `ns` with `rewrite=policy` and the policies in `file`; then,
/// that only the policies were installed.
fn install_policy_mode(plane: &ControlPlane, ns: &str, file: &std::path::Path) {
    run_ok(
        plane
            .helm()
            .args(["install", "rancher-remap", "-n", ns])
            .arg(crate::common::repo("charts/rancher-remap"))
            .args([
                "--set",
                "image.repository=registry.example.com/rancher-remap",
            ])
            .args(["--set", &format!("clusterId={CLUSTER_ID}")])
            .args(["--set", "rewrite=policy", "--set-file"])
            .arg(format!("policy={}", file.display())),
    );
    let kinds = run_ok(plane.kubectl(ADMIN).args([
        "get",
        "deployments,services,mutatingwebhookconfigurations,mutatingadmissionpolicies,mutatingadmissionpolicybindings",
        "-n",
        ns,
        "-o",
        "name",
    ]));
    let mut kinds: Vec<&str> = kinds.lines().collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "mutatingadmissionpolicy.admissionregistration.k8s.io/rancher-remap-metadata",
            "mutatingadmissionpolicy.admissionregistration.k8s.io/rancher-remap-workloads",
            "mutatingadmissionpolicybinding.admissionregistration.k8s.io/rancher-remap-metadata",
            "mutatingadmissionpolicybinding.admissionregistration.k8s.io/rancher-remap-workloads",
        ],
        "no server, no webhook"
    );
}

/// The chart with `rewrite=policy`: export-policy's output given with `--set-file`, no server
/// (no Deployment, no webhook): a migrated write is stored as the webhook stores it, doctor
/// reports the policies as the rewrite path, and an uninstall and install again keeps
/// rewriting (no parameters for kube-apiserver 1.36 to stop following, kubernetes#130887).
/// Then `rewrite=both` beside a webhook replica: the same write, the same object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_the_policies_alone_or_beside_the_webhook() {
    let (plane, _turn) = plane().await;
    let minor: u32 = plane.minor().trim_start_matches("1.").parse().unwrap();
    if minor < 36 {
        eprintln!(
            "skipped on {}: no MutatingAdmissionPolicy v1",
            plane.version
        );
        return;
    }
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy.path(),
        export(CHART_NS, &["--project-mappings", TABLE]),
    )
    .unwrap();
    let probe = Probe::new(plane, "rr-policy-chart-app").await;
    create_namespace(plane, CHART_NS);
    let policies = Policies(plane);
    install_policy_mode(plane, CHART_NS, policy.path());
    probe.rewritten("the chart's policies").await;

    // doctor: the policies are the rewrite path; the table is theirs.
    let kubeconfig = plane.kubeconfig(ADMIN);
    let args = ["-n", CHART_NS, "--cluster-id", CLUSTER_ID];
    let (out, checks) = crate::doctor::doctor(&kubeconfig, &args).await;
    assert_eq!(out.status.code(), Some(0), "{checks:#}");
    crate::doctor::assert_check(
        &checks,
        "policy",
        "ok",
        &["rancher-remap-metadata", "6 keys"],
    );
    assert!(checks.get("webhook").is_none(), "{checks:#}");
    crate::doctor::assert_check(&checks, "mappings", "warn", &["--mappings-file"]);

    // Uninstalled and installed again: rewritten again at once.
    let uninstall = || {
        run_ok(
            plane
                .helm()
                .args(["uninstall", "rancher-remap", "-n", CHART_NS]),
        )
    };
    uninstall();
    probe.left_alone("the policies gone").await;
    install_policy_mode(plane, CHART_NS, policy.path());
    probe.rewritten("the policies installed again").await;
    uninstall();
    drop(policies);

    // Both: the webhook's install, then the policies beside it.
    run_ok(
        plane
            .kubectl(ADMIN)
            .args(["delete", "namespace", CHART_NS, "--wait=true"]),
    );
    let install = Install::helm(
        plane,
        CHART_NS,
        &[
            &format!("clusterId={CLUSTER_ID}"),
            &format!("migrationUsers={{{STORK}}}"),
        ],
    );
    let policies = Policies(plane);
    let configmap = mappings_configmap(CHART_NS, TABLE);
    objects::create(&plane.client(ADMIN).await, &configmap, false)
        .await
        .unwrap();
    let _server = install.start_replica(0, &[]).await;
    until_the_webhook_answers(&probe.stork, "rr-policy-chart-app").await;
    install.helm_upgrade_files(&[("policy", policy.path())], &["rewrite=both"]);
    probe.rewritten("the webhook and the policies").await;
    let (_, checks) = crate::doctor::doctor(&kubeconfig, &["-n", CHART_NS]).await;
    crate::doctor::assert_check(&checks, "policy", "ok", &["equal to ConfigMap"]);
    assert!(checks.get("webhook").is_some(), "{checks:#}");
    drop(policies);
}

/// The table size the policies hold (docs/admission-policy.md, BENCHMARKS.md): with
/// `RANCHER_REMAP_POLICY_TABLE_SIZES=10,1000,10000,30000`, for each size a table of that many
/// `c-src0001:p-sNNNNN=c-dst0001:p-dNNNNN` entries is exported and applied (`kubectl apply
/// --server-side`), and a migrated write is timed 400 times, each beside the same write in the
/// namespace the policies leave out (the same load): the policies' cost. Prints; asserts that
/// each admitted table rewrites its last entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_sizes_the_policies_hold() {
    let Ok(sizes) = std::env::var("RANCHER_REMAP_POLICY_TABLE_SIZES") else {
        return;
    };
    let (plane, _turn) = plane().await;
    let admin = plane.client(ADMIN).await;
    let (app, left_out) = ("rr-policy-size", "rr-policy-size-left-out");
    for ns in [app, left_out] {
        create_namespace(plane, ns);
        objects::until_default_service_account(&admin, ns).await;
    }
    let policies = Policies(plane);
    for n in sizes.split(',').map(|s| s.trim().parse::<usize>().unwrap()) {
        let table: Vec<String> = (0..n)
            .map(|i| format!("c-src0001:p-s{i:05}=c-dst0001:p-d{i:05}"))
            .collect();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), table.join("\n")).unwrap();
        let path = file.path().to_str().unwrap();
        let args = [
            "export-policy",
            "--mappings-file",
            path,
            "--cluster-id",
            "c-dst0001",
            "-n",
            left_out,
        ];
        let yaml = crate::common::run(&args, "").stdout;
        std::fs::write(file.path(), &yaml).unwrap();
        let started = std::time::Instant::now();
        let applied = plane
            .kubectl(ADMIN)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(file.path())
            .output()
            .unwrap();
        let took = started.elapsed().as_secs_f64();
        if !applied.status.success() {
            let err = String::from_utf8_lossy(&applied.stderr);
            eprintln!(
                "{n} entries ({} bytes): refused in {took:.1} s: {}",
                yaml.len(),
                err.lines().last().unwrap_or_default()
            );
            continue;
        }
        let write = |ns: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "w-", "namespace": ns,
                         "labels": {PID: format!("p-s{:05}", n - 1)},
                         "annotations": {MIGRATED: "true"}}})
        };
        let want = json!(format!("p-d{:05}", n - 1));
        eventually("the table", Duration::from_secs(60), async || {
            objects::create(&admin, &write(app), true)
                .await
                .is_ok_and(|s| s["metadata"]["labels"][PID] == want)
        })
        .await;
        let (mut rewritten, mut alone) = (Vec::new(), Vec::new());
        for _ in 0..400 {
            for (ns, times) in [(app, &mut rewritten), (left_out, &mut alone)] {
                let t = std::time::Instant::now();
                objects::create(&admin, &write(ns), true).await.unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let q = |v: &mut Vec<f64>, q: f64| {
            v.sort_by(f64::total_cmp);
            v[(v.len() as f64 * q) as usize - 1]
        };
        eprintln!(
            "{n} entries ({} bytes): applied in {took:.1} s; a rewritten write p50 {:.2} ms p99 {:.2} ms, the same left out p50 {:.2} ms p99 {:.2} ms",
            yaml.len(), q(&mut rewritten, 0.5), q(&mut rewritten, 0.99), q(&mut alone, 0.5), q(&mut alone, 0.99)
        );
    }
    drop(policies);
}
