//! `rancher-remap audit` and `audit --fix`: the real binary, through a kubeconfig, against the
//! in-process fake API server holding objects of several kinds (one custom) in several
//! namespaces. Small pages, so every list is paged.

use std::collections::BTreeSet;
use std::process::Output;

use serde_json::{json, Value};

use rancher_remap::mapping::objects::Mappings;
use rancher_remap::rewrite::{display_pointer, has_migrated_annotation, Options};

use crate::common::*;
use crate::fake_api::{write_kubeconfig, FakeApi, ResourceType};

const MAPPINGS: &str = "p-ab12c=p-xy99z,c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z,p-cd56e=p-gh34k";
const KEY: &str = "field.cattle.io/projectId";
const MIGRATED: &str = "stork.libopenstorage.org/migrated";

fn meta(ns: Option<&str>, name: &str, migrated: bool, labels: Value) -> Value {
    let mut m = json!({"name": name, "labels": labels, "annotations": {}});
    if let Some(ns) = ns {
        m["namespace"] = json!(ns);
    }
    if migrated {
        m["annotations"][MIGRATED] = json!("true");
    }
    m
}

fn namespace(name: &str, project: &str) -> Value {
    annotated_namespace(name, project, Some(&format!("c-7gh2k:{project}")))
}

/// A Namespace with the project label, and Rancher's annotation when given.
fn annotated_namespace(name: &str, project: &str, annotation: Option<&str>) -> Value {
    let mut m = meta(None, name, false, json!({KEY: project}));
    if let Some(a) = annotation {
        m["annotations"][KEY] = json!(a);
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": m})
}

fn deployment(ns: &str, name: &str, migrated: bool, project: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta(Some(ns), name, migrated, json!({KEY: project, "app": name})),
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, KEY: project}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}],
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": name}},
                         "namespaceSelector": {"matchExpressions": [{"key": KEY, "operator": "In", "values": [project]}]}}]}}}}}})
}

fn configmap(ns: &str, name: &str, migrated: bool, annotation: Option<&str>) -> Value {
    let mut m = meta(Some(ns), name, migrated, json!({}));
    if let Some(a) = annotation {
        m["annotations"][KEY] = json!(a);
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m, "data": {"k": "v"}})
}

/// The objects of every test; comments say what the webhook would do with each.
fn objects() -> Vec<Value> {
    vec![
        // Holds migrated objects: counts although Stork did not mark it.
        namespace("team-a", "p-ab12c"),
        // Holds none, and only the label says where it came from: out of the default scope.
        annotated_namespace("team-b", "p-ab12c", None),
        // Holds none, but Rancher's annotation names a source cluster of the table: counts.
        namespace("team-c", "p-ab12c"),
        // Annotated with this cluster's ID: never changed once the audit knows the ID.
        annotated_namespace("team-d", "p-ab12c", Some("c-m-4kq8z9rt:p-xy99z")),
        namespace("kube-system", "p-ab12c"),
        namespace("rancher-remap", "p-ab12c"),
        deployment("team-a", "web", true, "p-ab12c"),
        // Nothing to rewrite: destination values stay.
        deployment("team-a", "done", true, "p-xy99z"),
        deployment("team-a", "zz-last", true, "p-cd56e"),
        configmap("team-a", "settings", true, Some("c-7gh2k:p-ab12c")),
        configmap("team-a", "plain", true, None),
        // An unmapped label on a migrated object: removed under drop.
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": meta(Some("team-a"), "creds", true, json!({KEY: "p-zz999"})),
            "data": {"password": "c2VjcmV0"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(Some("team-a"), "allow", true, json!({})),
            "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {KEY: "p-ab12c"}}}]}]}}),
        // A Pod's own spec counts only because the audit knows its kind (lists leave it out).
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": meta(Some("team-a"), "solo", true, json!({})),
            "spec": {"containers": [{"name": "c", "image": "nginx"}],
                "affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1,
                    "podAffinityTerm": {"topologyKey": "x", "namespaceSelector": {"matchLabels": {KEY: "p-ab12c"}}}}]}}}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": meta(Some("team-a"), "nightly", true, json!({})),
            "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {KEY: "p-ab12c"}}, "spec": {"containers": []}}}}}}),
        // A custom resource with a pod template.
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": meta(Some("team-a"), "gadget", true, json!({})),
            "spec": {"template": {"metadata": {"labels": {KEY: "p-cd56e"}}}}}),
        // Not migrated: only --scope all rewrites it.
        deployment("team-b", "native", false, "p-ab12c"),
        // Excluded namespaces: never touched.
        configmap(
            "kube-system",
            "migrated-here",
            true,
            Some("c-7gh2k:p-ab12c"),
        ),
        configmap(
            "rancher-remap",
            "migrated-here",
            true,
            Some("c-7gh2k:p-ab12c"),
        ),
        // Cluster-scoped: audited when no --namespace is given.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(None, "team-a-view", true, json!({KEY: "p-ab12c"})), "rules": []}),
    ]
}

/// What the default audit must find: (kind, namespace, name).
fn expected_default() -> BTreeSet<(String, String, String)> {
    [
        ("Namespace", "", "team-a"),
        ("Namespace", "", "team-c"),
        ("Deployment", "team-a", "web"),
        ("Deployment", "team-a", "zz-last"),
        ("ConfigMap", "team-a", "settings"),
        ("Secret", "team-a", "creds"),
        ("NetworkPolicy", "team-a", "allow"),
        ("Pod", "team-a", "solo"),
        ("CronJob", "team-a", "nightly"),
        ("Widget", "team-a", "gadget"),
        ("ClusterRole", "", "team-a-view"),
    ]
    .iter()
    .map(|(k, n, m)| (k.to_string(), n.to_string(), m.to_string()))
    .collect()
}

/// What the default audit must find without `--include-secrets`: all but the Secret.
fn expected_without_secrets() -> BTreeSet<(String, String, String)> {
    let mut expected = expected_default();
    expected.retain(|(kind, _, _)| kind != "Secret");
    expected
}

struct Cluster {
    fake: FakeApi,
    dir: tempfile::TempDir,
}

/// deploy/audit's RBAC file `name` (one not in its kustomization).
fn audit_rbac_file(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo("deploy/audit").join(name)).unwrap();
    rancher_remap::manifest::parse_documents(&text).unwrap()
}

/// The test cluster: the objects, and a kubeconfig for it. (What deploy/audit's RBAC lets the
/// audit do is the real apiserver's to judge: `cluster_suite::audit`.)
async fn cluster() -> Cluster {
    let fake = FakeApi::start().await;
    fake.add_type(ResourceType::custom(
        "example.com",
        "v1",
        "widgets",
        "Widget",
        true,
    ));
    fake.put_all(objects());
    let dir = tempfile::tempdir().unwrap();
    fake.kubeconfig(dir.path());
    Cluster { fake, dir }
}

impl Cluster {
    /// `audit --project-mappings MAPPINGS --page-size 2 --include-secrets ARGS...` through the
    /// kubeconfig.
    async fn audit(&self, args: &[&str]) -> Output {
        let mut all = vec!["--include-secrets"];
        all.extend_from_slice(args);
        self.run(&all, &[]).await
    }

    /// `audit --project-mappings MAPPINGS --page-size 2 ARGS...` with `env`.
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let kubeconfig = self.dir.path().join("kubeconfig");
        let mut cmd = bin();
        cmd.args(["audit", "--project-mappings", MAPPINGS, "--page-size", "2"])
            .args(args)
            .envs(env.iter().copied())
            .env("KUBECONFIG", kubeconfig);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

fn findings(out: &Output) -> Vec<Value> {
    serde_json::from_str::<Value>(&stdout(out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
        .as_array()
        .unwrap()
        .clone()
}

fn names(findings: &[Value]) -> BTreeSet<(String, String, String)> {
    findings
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["namespace"].as_str().unwrap_or_default().to_string(),
                f["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The stored object a finding names.
fn stored(fake: &FakeApi, f: &Value) -> Value {
    let mut like = json!({"apiVersion": f["apiVersion"], "kind": f["kind"],
        "metadata": {"name": f["name"]}});
    if let Some(ns) = f["namespace"].as_str() {
        like["metadata"]["namespace"] = json!(ns);
    }
    fake.get(&like).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_exactly_what_the_webhook_would_rewrite() {
    let c = cluster().await;
    let lists_before = c.fake.lists();
    let out = c.audit(&["-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let found = findings(&out);
    assert_eq!(names(&found), expected_default(), "{}", stdout(&out));
    assert_eq!(
        found.len(),
        expected_default().len(),
        "one finding per object"
    );

    // Each finding says what the engine says about the stored object, value by value.
    let table = Mappings::from_text(MAPPINGS).unwrap();
    for f in &found {
        let obj = stored(&c.fake, f);
        let migrated = f["kind"] == "Namespace" || has_migrated_annotation(&obj);
        let outcome = rewrite(
            &obj,
            &table,
            &Options {
                unmapped: Default::default(),
                migrated,
            },
        );
        let changes: Vec<Value> = outcome
            .rewrites()
            .map(|r| json!({"place": r.location.as_str(), "path": display_pointer(r.pointer), "from": r.from, "to": r.to}))
            .collect();
        assert_eq!(f["changes"], json!(changes), "{f}");
        assert_eq!(
            f["unmapped"].as_array().unwrap().len(),
            outcome.unmapped().count(),
            "{f}"
        );
    }
    let creds = found.iter().find(|f| f["name"] == "creds").unwrap();
    assert_eq!(creds["unmapped"][0]["value"], "p-zz999");
    assert_eq!(creds["unmapped"][0]["action"], "removed");
    assert!(
        !stdout(&out).contains("c2VjcmV0"),
        "no Secret data in the report"
    );
    let web = found.iter().find(|f| f["name"] == "web").unwrap();
    assert_eq!(web["apiVersion"], "apps/v1");
    assert!(web["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["path"] == "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespaceSelector.matchExpressions[0].values[0]"
            && c["to"] == "p-xy99z"));

    // Paged: more list requests than listed types (namespaces, configmaps and deployments
    // hold more than a page each).
    assert!(c.fake.lists() - lists_before > 12, "{}", c.fake.lists());
    assert!(c.fake.patches().is_empty(), "an audit patches nothing");
    let err = stderr(&out);
    assert!(err.contains("11 object(s) would change"), "{err}");
    assert!(
        !err.contains('\r'),
        "no progress line when stderr is not a terminal: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_outlives_its_continue_token_goes_on() {
    let c = cluster().await;
    // The third continued list, and every token handed out before it, is too old.
    c.fake.expire_continue_tokens_at(3);
    let out = c.audit(&["-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(c.fake.expired_tokens() >= 1, "no token expired");
    assert_eq!(names(&findings(&out)), expected_default());
    assert_eq!(
        findings(&out).len(),
        expected_default().len(),
        "nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_table_scope_all_and_chosen_namespaces() {
    let c = cluster().await;
    let out = c.audit(&[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    for col in ["KIND", "NAMESPACE", "NAME", "PLACE", "CHANGE"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        text.lines().any(|l| l.starts_with("Deployment")
            && l.contains("team-a")
            && l.contains("metadata.labels[field.cattle.io/projectId]")
            && l.contains("p-ab12c -> p-xy99z")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("creds") && l.contains("p-zz999 -> (removed: no mapping)")),
        "{text}"
    );

    // --scope all: the native Deployment and team-b's Namespace too, and team-d's unless the
    // audit knows it is this cluster's own.
    let all = names(&findings(&c.audit(&["-o", "json", "--scope", "all"]).await));
    let mut expected = expected_default();
    expected.insert(("Deployment".into(), "team-b".into(), "native".into()));
    expected.insert(("Namespace".into(), "".into(), "team-b".into()));
    let mut with_own = expected.clone();
    with_own.insert(("Namespace".into(), "".into(), "team-d".into()));
    assert_eq!(all, with_own);
    let args = [
        "-o",
        "json",
        "--scope",
        "all",
        "--cluster-id",
        "c-m-4kq8z9rt",
    ];
    assert_eq!(names(&findings(&c.audit(&args).await)), expected);

    // --namespace: only there (and that Namespace), nothing cluster-scoped; an excluded-by-
    // default namespace can be named.
    let out = c
        .audit(&[
            "-o",
            "json",
            "-n",
            "team-b",
            "--namespace",
            "kube-system",
            "--scope",
            "all",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let only: BTreeSet<_> = [
        ("Namespace", "", "team-b"),
        ("Namespace", "", "kube-system"),
        ("Deployment", "team-b", "native"),
        ("ConfigMap", "kube-system", "migrated-here"),
    ]
    .iter()
    .map(|(k, n, m)| (k.to_string(), n.to_string(), m.to_string()))
    .collect();
    assert_eq!(names(&findings(&out)), only);

    // The chosen Namespaces are read one by one: no cluster-wide list of them is needed.
    c.fake.forbid("list", "namespaces");
    let out = c
        .audit(&["-o", "json", "-n", "team-b", "--scope", "all"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(names(&findings(&out)).contains(&("Namespace".into(), "".into(), "team-b".into())));
    assert!(!stderr(&out).contains("skipped"), "{}", stderr(&out));
    // A namespace that does not exist holds nothing to change (as kubectl's "No resources
    // found"), and stderr says it was not there.
    let out = c.audit(&["-o", "json", "-n", "no-such-namespace"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("skipped: namespace no-such-namespace: 404"),
        "{}",
        stderr(&out)
    );

    // A namespace with nothing to change: exit 0, an empty list.
    let out = c.audit(&["-o", "json", "-n", "team-b"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(findings(&out), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_patches_behind_a_resource_version_test_and_a_second_audit_is_clean() {
    let c = cluster().await;
    let before = c.fake.objects();
    let table = Mappings::from_text(MAPPINGS).unwrap();

    let out = c.audit(&["--fix", "-o", "json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let found = findings(&out);
    assert_eq!(names(&found), expected_default());
    assert!(
        found.iter().all(|f| f["fix"]["result"] == "patched"),
        "{found:?}"
    );

    // One patch per finding, each opening with the resourceVersion test of what was listed.
    let patches = c.fake.patches();
    assert_eq!(patches.len(), found.len());
    for p in &patches {
        assert_eq!(p.status, 200);
        assert!(!p.dry_run);
        let ops = p.body.as_array().unwrap();
        assert_eq!(ops[0]["op"], "test");
        assert_eq!(ops[0]["path"], "/metadata/resourceVersion");
        // Types read metadata-only (a ConfigMap, the Secret, a ClusterRole, Namespaces) are
        // patched in /metadata only.
        if ["settings", "creds", "team-a-view", "team-a", "team-c"].contains(&p.name.as_str()) {
            assert!(
                ops.iter()
                    .all(|o| o["path"].as_str().unwrap().starts_with("/metadata/")),
                "{}: {ops:?}",
                p.name
            );
        }
    }

    // Each object is what the webhook would have made of it; the others are untouched.
    for old in &before {
        let now = c.fake.get(old).unwrap();
        let hit = found.iter().any(|f| {
            f["name"] == old["metadata"]["name"]
                && f["kind"] == old["kind"]
                && f["namespace"].as_str().unwrap_or_default()
                    == old["metadata"]["namespace"].as_str().unwrap_or_default()
        });
        if hit {
            let migrated = old["kind"] == "Namespace" || has_migrated_annotation(old);
            let outcome = rewrite(
                old,
                &table,
                &Options {
                    unmapped: Default::default(),
                    migrated,
                },
            );
            let mut want = outcome.apply(old).unwrap();
            want["metadata"]["resourceVersion"] = now["metadata"]["resourceVersion"].clone();
            assert_eq!(now, want);
        } else {
            assert_eq!(&now, old, "untouched");
        }
    }
    let ks = c
        .fake
        .get(&configmap("kube-system", "migrated-here", true, None))
        .unwrap();
    assert_eq!(ks["metadata"]["annotations"][KEY], "c-7gh2k:p-ab12c");

    let again = c.audit(&["-o", "json"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(findings(&again), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_between_list_and_patch_is_read_again_not_overwritten() {
    let c = cluster().await;
    let web = deployment("team-a", "web", true, "");
    // Another writer moves the Deployment to another source project and adds an annotation
    // after the audit listed it, just before its patch arrives.
    c.fake.before_patch(&web, |obj| {
        obj["metadata"]["labels"][KEY] = json!("p-cd56e");
        obj["metadata"]["annotations"]["owner"] = json!("someone-else");
    });
    let out = c.audit(&["--fix", "-o", "json", "-n", "team-a"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    let now = c.fake.get(&web).unwrap();
    assert_eq!(
        now["metadata"]["labels"][KEY], "p-gh34k",
        "the new value, mapped"
    );
    assert_eq!(now["metadata"]["annotations"]["owner"], "someone-else");
    assert_eq!(
        now["spec"]["template"]["metadata"]["labels"][KEY],
        "p-xy99z"
    );

    let tries: Vec<u16> = c
        .fake
        .patches()
        .iter()
        .filter(|p| p.name == "web")
        .map(|p| p.status)
        .collect();
    assert_eq!(
        tries,
        [422, 200],
        "the stale patch failed its test, then a fresh one went in"
    );
    let f = findings(&out)
        .into_iter()
        .find(|f| f["name"] == "web")
        .unwrap();
    assert_eq!(f["fix"]["attempts"], 2);
    assert!(
        f["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["from"] == "p-cd56e" && c["to"] == "p-gh34k"),
        "the finding reports what was patched: {f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_makes_the_object_clean_is_left_alone() {
    let c = cluster().await;
    let settings = configmap("team-a", "settings", true, None);
    c.fake.before_patch(&settings, |obj| {
        obj["metadata"]["annotations"][KEY] = json!("c-m-4kq8z9rt:p-xy99z");
    });
    let out = c.audit(&["--fix", "-o", "json", "-n", "team-a"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let f = findings(&out)
        .into_iter()
        .find(|f| f["name"] == "settings")
        .unwrap();
    assert_eq!(f["fix"]["result"], "already_clean");
    let rv_after_writer = c.fake.get(&settings).unwrap()["metadata"]["resourceVersion"].clone();
    assert_eq!(
        c.fake
            .patches()
            .iter()
            .filter(|p| p.name == "settings")
            .count(),
        1,
        "no second patch"
    );
    assert!(rv_after_writer.is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_server_sends_dry_run_and_changes_nothing() {
    let c = cluster().await;
    let before = c.fake.objects();
    let out = c
        .audit(&["--fix", "--dry-run=server", "-n", "team-a"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("patched (dry run)"),
        "{}",
        stdout(&out)
    );
    let patches = c.fake.patches();
    assert!(!patches.is_empty());
    assert!(patches.iter().all(|p| p.dry_run && p.status == 200));
    assert_eq!(c.fake.objects(), before);
    assert!(
        stderr(&out).contains("patched (dry run)"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_2_and_forbidden_types_are_skipped_out_loud() {
    let c = cluster().await;
    c.fake.forbid("list", "secrets");
    let out = c.audit(&["-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!names(&findings(&out)).iter().any(|(k, _, _)| k == "Secret"));
    assert!(
        stderr(&out).contains("skipped: secrets: 403 Forbidden"),
        "{}",
        stderr(&out)
    );

    // An aggregated API that is down: named, the rest audited, the audit incomplete.
    c.fake.add_type(ResourceType::new(
        "metrics.k8s.io",
        "v1beta1",
        "pods",
        "PodMetrics",
        true,
    ));
    c.fake.make_unavailable("metrics.k8s.io/v1beta1");
    let out = c.audit(&["-o", "json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("discovery of metrics.k8s.io/v1beta1: no answer within 10 s"),
        "{}",
        stderr(&out)
    );
    assert!(names(&findings(&out)).contains(&("Deployment".into(), "team-a".into(), "web".into())));
    let c = cluster().await;

    // A list that fails: the audit is incomplete, whatever it found.
    c.fake.fail_lists(1);
    let out = c.audit(&["-o", "json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("500 InternalError"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("incomplete"), "{}", stderr(&out));

    // No API server at all (nothing listens on port 1).
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), "http://127.0.0.1:1");
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["audit", "--project-mappings", MAPPINGS])
            .env("KUBECONFIG", kubeconfig)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("error:"), "{}", stderr(&out));

    // Bad mappings: exit 2 too (1 would mean "something would change").
    let out = bin()
        .args(["audit", "--project-mappings", "p-ab12c"])
        .env("KUBECONFIG", c.dir.path().join("kubeconfig"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_from_the_configmap_and_its_namespace_is_left_out() {
    let c = cluster().await;
    c.fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rancher-remap-mappings", "namespace": "remap-system",
                     "labels": {"rancher-remap.io/mappings": "true"}},
        "data": {"ns.pair": MAPPINGS.replace(',', "\n")}}));
    c.fake.put(configmap(
        "remap-system",
        "migrated-here",
        true,
        Some("c-7gh2k:p-ab12c"),
    ));
    let out = tokio::task::spawn_blocking({
        let kubeconfig = c.dir.path().join("kubeconfig");
        move || {
            bin()
                .args([
                    "audit",
                    "-o",
                    "json",
                    "--mappings-configmap",
                    "remap-system/rancher-remap-mappings",
                ])
                .env("KUBECONFIG", kubeconfig)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let found = names(&findings(&out));
    assert!(
        !found.iter().any(|(_, ns, _)| ns == "remap-system"),
        "{found:?}"
    );
    // kube-system is still left out; rancher-remap is an ordinary namespace now.
    assert!(found.contains(&(
        "ConfigMap".into(),
        "rancher-remap".into(),
        "migrated-here".into()
    )));
    assert!(!found.iter().any(|(_, ns, _)| ns == "kube-system"));
}

/// deploy/audit: the Job's command, run as the Job runs it (args and environment from the
/// manifest) against the fake API server; its roles grant what docs/audit.md says and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_job_and_its_roles() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;

    let docs: Vec<Value> = ["rbac.yaml", "job.yaml"]
        .iter()
        .flat_map(|f| audit_rbac_file(f))
        .collect();
    let of = |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
    let binding: ClusterRoleBinding =
        serde_json::from_value(of("ClusterRoleBinding")[0].clone()).unwrap();
    assert_eq!(
        binding.role_ref.name, "rancher-remap-audit",
        "report only by default"
    );
    let job: Job = serde_json::from_value(of("Job")[0].clone()).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some(subject.name.as_str())
    );
    assert_eq!(
        subject.namespace.as_deref(),
        job.metadata.namespace.as_deref()
    );

    // The container's command, against a cluster holding the mapping ConfigMap.
    let c = cluster().await;
    c.fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rancher-remap-mappings", "namespace": "rancher-remap",
                     "labels": {"rancher-remap.io/mappings": "true"}},
        "data": {"ns.pair": MAPPINGS}}));
    let container = &pod.containers[0];
    let mut cmd = bin();
    cmd.args(container.args.clone().unwrap())
        .env("KUBECONFIG", c.dir.path().join("kubeconfig"));
    for e in container.env.clone().unwrap() {
        cmd.env(e.name, e.value.unwrap());
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(names(&findings(&out)), expected_without_secrets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_leaves_refused_objects_and_a_patch_out_of_attempts_fails() {
    let c = cluster().await;
    // Under deny the Secret with an unmapped project ID is refused, not patched: exit 1.
    let out = c
        .audit(&["--fix", "-o", "json", "-n", "team-a", "--unmapped", "deny"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let found = findings(&out);
    let creds = found.iter().find(|f| f["name"] == "creds").unwrap();
    assert_eq!(creds["fix"]["result"], "refused");
    assert_eq!(creds["unmapped"][0]["action"], "refused");
    assert_eq!(creds["fix"]["attempts"], 0);
    assert!(!c.fake.patches().iter().any(|p| p.name == "creds"));
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"namespace": "team-a", "name": "creds"}});
    assert_eq!(
        c.fake.get(&secret).unwrap()["metadata"]["labels"][KEY],
        "p-zz999"
    );
    assert!(found
        .iter()
        .filter(|f| f["name"] != "creds")
        .all(|f| f["fix"]["result"] == "patched"));

    // One attempt allowed, and someone changes the object in between: failed, exit 2, and the
    // other writer's change stands.
    let c = cluster().await;
    let web = deployment("team-a", "web", true, "");
    c.fake.before_patch(&web, |obj| {
        obj["metadata"]["labels"]["team"] = json!("blue");
    });
    let out = c
        .audit(&["--fix", "-o", "json", "-n", "team-a", "--max-attempts", "1"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let f = findings(&out)
        .into_iter()
        .find(|f| f["name"] == "web")
        .unwrap();
    assert_eq!(f["fix"]["result"], "failed");
    assert!(f["fix"]["error"].as_str().unwrap().contains("422"), "{f}");
    let now = c.fake.get(&web).unwrap();
    assert_eq!(now["metadata"]["labels"]["team"], "blue");
    assert_eq!(now["metadata"]["labels"][KEY], "p-ab12c", "not overwritten");
    assert!(stderr(&out).contains("1 failed"), "{}", stderr(&out));
}

/// On a terminal (util-linux `script` gives it one) stderr carries the progress line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_a_progress_line() {
    let c = cluster().await;
    let kubeconfig = c.dir.path().join("kubeconfig");
    let command = format!(
        "{} audit --project-mappings {MAPPINGS} -o json",
        env!("CARGO_BIN_EXE_rancher-remap")
    );
    let out = tokio::task::spawn_blocking(move || {
        tool("script")
            .args(["-qec", &command, "/dev/null"])
            .env("KUBECONFIG", kubeconfig)
            .output()
    })
    .await
    .unwrap()
    .expect("script runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\raudit: ") || text.contains("\r\u{1b}[Kaudit: "),
        "{text:?}"
    );
    assert!(text.contains("resource types"), "{text:?}");
}

/// kubectl's conventions: `--kubeconfig` and `--context` pick the cluster (not whatever
/// KUBECONFIG's current context is: `--fix` against the wrong cluster is one typo away), and an
/// unreachable API server is named once, by URL, never with the credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_and_context_pick_the_cluster_and_errors_name_it_without_credentials() {
    let c = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("two-clusters");
    // The current context is a closed port, with a password in its URL and a token.
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: down\nclusters:\n- name: down\n  cluster:\n    server: https://admin:SeCrEtPaSs@127.0.0.1:1\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: down\n  context:\n    cluster: down\n    user: tok\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\nusers:\n- name: tok\n  user:\n    token: SeCrEtToKeN\n- name: nobody\n  user: {{}}\n",
            c.fake.addr
        ),
    )
    .unwrap();
    let path = kubeconfig.to_str().unwrap();
    let audit = |args: Vec<&str>| {
        let mut cmd = bin();
        cmd.args(["audit", "--project-mappings", MAPPINGS, "-o", "json"])
            .args(args)
            // Whatever KUBECONFIG says, the flags win.
            .env("KUBECONFIG", "/nonexistent");
        cmd.output().unwrap()
    };
    let picked = audit(vec!["--kubeconfig", path, "--context", "fake"]);
    assert_eq!(picked.status.code(), Some(1), "{}", stderr(&picked));
    assert_eq!(names(&findings(&picked)), expected_without_secrets());

    let down = audit(vec!["--kubeconfig", path]);
    assert_eq!(down.status.code(), Some(2));
    let e = stderr(&down);
    assert_eq!(e.matches("https://127.0.0.1:1").count(), 1, "{e}");
    assert!(e.contains("Connection refused"), "{e}");
    for secret in ["SeCrEtPaSs", "SeCrEtToKeN", "admin"] {
        assert!(
            !e.contains(secret) && !stdout(&down).contains(secret),
            "{e}"
        );
    }
    let unknown = audit(vec!["--kubeconfig", path, "--context", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("context \"nope\""),
        "{}",
        stderr(&unknown)
    );
}

/// The request log's lists (GETs of a collection) of the type named `plural`, as (path, Accept).
fn lists_of(fake: &FakeApi, plural: &str) -> Vec<(String, String)> {
    fake.request_log()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/{plural}")))
        .map(|r| (r.path, r.accept))
        .collect()
}

/// Kinds whose project IDs live only in metadata are listed in kube-apiserver's metadata-only
/// form (the fake answers PartialObjectMetadataList, as the real one); kinds with pod templates
/// or selectors, and custom types, whole. The findings are the same either way: the first test
/// checks each against the engine on the whole stored object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_lists_for_metadata_kinds_and_whole_objects_for_the_others() {
    let c = cluster().await;
    c.fake.put(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": meta(Some("team-a"), "front", true, json!({KEY: "p-xy99z"})),
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}));
    let out = c.audit(&["-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(names(&findings(&out)), expected_default());
    const METADATA: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    for plural in [
        "configmaps",
        "secrets",
        "services",
        "namespaces",
        "clusterroles",
    ] {
        let lists = lists_of(&c.fake, plural);
        assert!(!lists.is_empty(), "{plural} listed");
        assert!(
            lists.iter().all(|(_, a)| a == METADATA),
            "{plural}: {lists:?}"
        );
    }
    for plural in [
        "deployments",
        "networkpolicies",
        "widgets",
        "pods",
        "cronjobs",
    ] {
        let lists = lists_of(&c.fake, plural);
        assert!(!lists.is_empty(), "{plural} listed");
        assert!(
            lists.iter().all(|(_, a)| !a.contains("as=")),
            "{plural}: {lists:?}"
        );
    }
}

/// By default the audit does not read Secrets: it finds all it finds but the Secret, says so,
/// and sends no request for Secrets. Asked for them (flag or environment) it lists them. (That
/// the shipped RBAC needs no more, and refuses them until the opt-in role is applied, is
/// `cluster_suite::audit`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_not_read_unless_asked() {
    let c = cluster().await;
    let out = c.run(&["-o", "json"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(names(&findings(&out)), expected_without_secrets());
    let err = stderr(&out);
    assert!(
        err.contains("skipped: secrets: not read without --include-secrets"),
        "{err}"
    );
    let secret_requests: Vec<_> = c
        .fake
        .request_log()
        .into_iter()
        .filter(|r| r.path.contains("/secrets"))
        .collect();
    assert!(secret_requests.is_empty(), "{secret_requests:?}");
    let off = c
        .run(
            &["-o", "json"],
            &[("RANCHER_REMAP_AUDIT_INCLUDE_SECRETS", "false")],
        )
        .await;
    assert_eq!(names(&findings(&off)), expected_without_secrets());
    for (args, env) in [
        (vec!["-o", "json", "--include-secrets"], vec![]),
        (
            vec!["-o", "json"],
            vec![("RANCHER_REMAP_AUDIT_INCLUDE_SECRETS", "1")],
        ),
    ] {
        let out = c.run(&args, &env).await;
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_eq!(names(&findings(&out)), expected_default());
        assert!(!stderr(&out).contains("skipped"), "{}", stderr(&out));
    }
    assert!(!lists_of(&c.fake, "secrets").is_empty());
}
