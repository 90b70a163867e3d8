//! `export-policy` offline: the YAML stream it prints (kinds, fields, the table), what it
//! refuses (`--unmapped deny`, bad tables with `check`'s messages), and what it says it does
//! not cover. Through the real apiserver: `cluster_suite::policy`.

use serde_json::{json, Value};

use crate::common::*;

const CONFIGMAP: &str = "deploy/examples/mappings-configmap.yaml";

fn export(args: &[&str]) -> std::process::Output {
    let mut all = vec!["export-policy"];
    all.extend_from_slice(args);
    run(&all, "")
}

fn exported(args: &[&str]) -> (String, Vec<Value>) {
    let out = export(args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let objects = rancher_remap::manifest::parse_objects(&text).unwrap();
    (text, objects)
}

#[test]
fn one_stream_of_policies_holding_the_table_and_bindings() {
    let file = repo(CONFIGMAP);
    let args = [
        "--mappings-file",
        file.to_str().unwrap(),
        "--cluster-id",
        "c-m-4kq8z9rt",
        "--migration-user",
        "stork",
        "-n",
        "remap",
    ];
    let (text, objects) = exported(&args);
    let kinds: Vec<(&str, &str)> = objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("MutatingAdmissionPolicy", "rancher-remap-metadata"),
            ("MutatingAdmissionPolicy", "rancher-remap-workloads"),
            ("MutatingAdmissionPolicyBinding", "rancher-remap-metadata"),
            ("MutatingAdmissionPolicyBinding", "rancher-remap-workloads"),
        ]
    );

    check_the_table_and_who(&objects);
    assert!(!text.contains("params"), "no parameters");

    for policy in &objects[0..2] {
        check_policy_shape(policy);
    }
    let metadata = &objects[0]["spec"];
    assert_eq!(
        metadata["matchConstraints"]["resourceRules"][0]["resources"],
        json!(["*"])
    );
    assert_eq!(metadata["mutations"].as_array().unwrap().len(), 1);
    check_workloads_policy(&objects[1]["spec"]);

    for binding in &objects[2..] {
        // No paramRef: the table is the policy's own.
        assert_eq!(
            binding["spec"],
            json!({"policyName": binding["metadata"]["name"]})
        );
    }

    // What it does not cover, said in the output.
    for said in [
        "Not covered",
        "custom resources",
        "--unmapped deny",
        "warnings",
        "--mode warn",
        "cost limit",
        "run the webhook",
    ] {
        assert!(text.contains(said), "{said}");
    }
    assert!(!text.contains(concat!("..", "/shared")));
    // The same bytes every time: applying it again changes nothing.
    let (again, _) = exported(&args);
    assert_eq!(text, again);
}

/// The table, in each policy's variables (one literal, `table0`, for a table this small): the
/// projects and clusters apart (a `C:P` value is looked up by halves, as the engine does), the
/// values already mapped. This cluster and the migration users of the flag and of the
/// ConfigMap's annotation are in the matchConditions (which cannot read variables).
fn check_the_table_and_who(objects: &[Value]) {
    let table = "{\n'c.c-7gh2k': 'c-m-4kq8z9rt',\n'dc.c-m-4kq8z9rt': '',\n'dp.p-gh34k': '',\n\
                 'dp.p-xy99z': '',\n'p.p-ab12c': 'p-xy99z',\n'p.p-cd56e': 'p-gh34k'\n}";
    for o in objects {
        assert_eq!(
            o["metadata"]["annotations"],
            json!({"rancher-remap.io/export-policy": env!("CARGO_PKG_VERSION"),
                   "rancher-remap.io/cluster-id": "c-m-4kq8z9rt"})
        );
    }
    for policy in &objects[0..2] {
        assert_eq!(
            policy["spec"]["variables"],
            json!([{"name": "table0", "expression": table}])
        );
        let conditions = policy["spec"]["matchConditions"].to_string();
        for literal in [
            "c == 'c-m-4kq8z9rt'",
            r#"c in [\"c-7gh2k\"]"#,
            r#"request.userInfo.username in [\"stork\",\"system:serviceaccount:kube-system:stork-migrator\"]"#,
        ] {
            assert!(conditions.contains(literal), "{literal}: {conditions}");
        }
    }
}

/// What both policies are: v1, no parameters, Fail, the namespaces left out, CREATE and UPDATE,
/// the two conditions, JSON patches of strings.
fn check_policy_shape(policy: &Value) {
    assert_eq!(policy["apiVersion"], "admissionregistration.k8s.io/v1");
    let spec = &policy["spec"];
    assert_eq!(spec.get("paramKind"), None);
    assert_eq!(spec["failurePolicy"], "Fail");
    assert_eq!(spec["reinvocationPolicy"], "IfNeeded");
    assert_eq!(
        spec["matchConstraints"]["namespaceSelector"]["matchExpressions"][0]["values"],
        json!(["kube-system", "remap"])
    );
    let rules = spec["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap();
    for r in rules {
        assert_eq!(r["operations"], json!(["CREATE", "UPDATE"]));
    }
    let conditions: Vec<&str> = spec["matchConditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(conditions, ["not-this-clusters-namespace", "migrated"]);
    for m in spec["mutations"].as_array().unwrap() {
        assert_eq!(m["patchType"], "JSONPatch");
        let expr = m["jsonPatch"]["expression"].as_str().unwrap();
        assert!(expr.contains("JSONPatch{op: 'replace'"), "{expr}");
        // Patch values are strings: no typed object is built (it fails in the apiserver).
        assert!(!expr.contains("Object."), "{expr}");
    }
}

/// The workloads policy: every kind with a pod template or namespace selector, each place.
fn check_workloads_policy(workloads: &Value) {
    let resources: Vec<&str> = workloads["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        resources,
        [
            "pods",
            "podtemplates",
            "replicationcontrollers",
            "deployments",
            "statefulsets",
            "daemonsets",
            "replicasets",
            "jobs",
            "cronjobs",
            "networkpolicies"
        ]
    );
    // Template metadata (4 places), pod specs (4), NetworkPolicy rules (1).
    assert_eq!(workloads["mutations"].as_array().unwrap().len(), 9);
    let all = workloads["mutations"].to_string();
    for place in [
        "object.?spec.?template.?metadata.?labels",
        "object.?template.?metadata.?annotations",
        "object.?spec.?jobTemplate.?metadata.?labels",
        "object.?spec.?jobTemplate.?spec.?template.?spec.?affinity.?podAntiAffinity.?preferredDuringSchedulingIgnoredDuringExecution",
        "object.?spec.?ingress",
        "object.?spec.?egress",
    ] {
        assert!(all.contains(place), "{place}");
    }
}

#[test]
fn keep_never_removes() {
    let (_, drop) = exported(&["--project-mappings", "p-a=p-b", "--cluster-id", "c-1"]);
    let (_, keep) = exported(&[
        "--project-mappings",
        "p-a=p-b",
        "--cluster-id",
        "c-1",
        "--unmapped",
        "keep",
    ]);
    let removes = |objects: &[Value]| {
        objects[0..2]
            .iter()
            .any(|p| p.to_string().contains("op: 'remove'"))
    };
    assert!(removes(&drop));
    assert!(!removes(&keep));
}

#[test]
fn deny_is_refused_before_anything_is_read() {
    let out = export(&[
        "--mappings-file",
        "/nonexistent",
        "--cluster-id",
        "c-1",
        "--unmapped",
        "deny",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("--unmapped deny cannot be exported") && err.contains("webhook"),
        "{err}"
    );
}

#[test]
fn a_cluster_id_is_required() {
    let out = export(&["--project-mappings", "p-a=p-b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--cluster-id"), "{}", stderr(&out));
}

/// A bad table prints nothing, with the message `check` gives for it.
#[test]
fn bad_tables_are_refused_as_check_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    for (table, cluster) in [
        ("p-a=p-b,p-b=p-c", "c-1"),
        ("p-a: p-b", "c-1"),
        ("c-1:p-a=c-2:p-b", "c-1"),
        ("c-1:p-a=c-2:p-b", "c-3"),
        ("p-a=p-b,p-a=p-c", "c-1"),
    ] {
        let file = dir.path().join("table.txt");
        std::fs::write(&file, table).unwrap();
        let file = file.to_str().unwrap();
        let checked = run(&["check", "--cluster-id", cluster, "-f", file], "");
        assert_eq!(checked.status.code(), Some(1), "{table}");
        let out = export(&["--mappings-file", file, "--cluster-id", cluster]);
        assert_eq!(out.status.code(), Some(1), "{table}");
        assert!(stdout(&out).is_empty(), "{table}");
        // check prints `FILE: WHAT: error: PATH: message`; the message is the same.
        let check_says = stdout(&checked);
        let message = check_says
            .lines()
            .find_map(|l| l.split(": error: ").nth(1))
            // The path is `project-mappings[ENTRY]` (the entry may hold `: `) or `data`.
            .and_then(|m| m.split_once("]: ").or_else(|| m.split_once(": ")))
            .map(|(_, m)| m)
            .unwrap_or_else(|| panic!("{table}: {check_says}"));
        let err = stderr(&out);
        assert!(err.contains(message), "{table}: {err} lacks {message}");
    }
}

#[test]
fn an_empty_table_is_refused() {
    let out = export(&["--project-mappings", " ", "--cluster-id", "c-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("no mapping entries"),
        "{}",
        stderr(&out)
    );
}
