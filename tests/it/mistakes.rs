//! The mistakes made writing a ClusterPair or a table, caught offline (`check`, `derive`) and by
//! the validating webhook alike: a misspelt Stork field, and a table whose reverse pair would
//! lose an entry.

use serde_json::{json, Value};

use crate::common::*;

fn example_pair() -> Value {
    rancher_remap::manifest::parse_objects(
        &std::fs::read_to_string(repo("deploy/examples/clusterpair.yaml")).unwrap(),
    )
    .unwrap()
    .remove(0)
}

/// The example pair with `spec.<path>` renamed to the last part of `typo` (`platformOption`,
/// `platformOptions.rancer`, `platformOptions.rancher.projectMapings`).
fn misspelt(typo: &str) -> Value {
    let mut cp = example_pair();
    let (parent, key) = typo.rsplit_once('.').unwrap_or(("", typo));
    let mut at = &mut cp["spec"];
    for p in parent.split('.').filter(|p| !p.is_empty()) {
        at = &mut at[p];
    }
    let fields = at.as_object_mut().unwrap();
    let (known, value) = fields
        .iter()
        .next_back()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    fields.remove(&known);
    fields.insert(key.to_string(), value);
    cp
}

const TYPOS: [(&str, &str, &str); 3] = [
    ("platformOption", "spec.platformOption", "platformOptions"),
    (
        "platformOptions.rancer",
        "spec.platformOptions.rancer",
        "rancher",
    ),
    (
        "platformOptions.rancher.projectMapings",
        "spec.platformOptions.rancher.projectMapings",
        "projectMappings",
    ),
];

#[test]
fn check_refuses_a_misspelt_stork_field_and_says_which_was_meant() {
    let dir = tempfile::tempdir().unwrap();
    for (typo, path, meant) in TYPOS {
        let file = dir.path().join("cp.json");
        std::fs::write(&file, misspelt(typo).to_string()).unwrap();
        let out = run(&["check", "-f", file.to_str().unwrap()], "");
        assert_eq!(out.status.code(), Some(1), "{typo}: {}", stdout(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "ClusterPair migrationnamespace/remotecluster: error: {path}: unknown field"
            )) && text.contains(&format!("did you mean `{meant}`?")),
            "{typo}: {text}"
        );
        // Only the field: the rest of the pair is as good as the example.
        assert!(stderr(&out).contains("1 errors"), "{}", stderr(&out));
    }
    // Stork's option keys are its storage driver's business: a warning, as before.
    let mut cp = example_pair();
    cp["spec"]["options"] = json!({"projectmapings": "x"});
    let file = dir.path().join("options.json");
    std::fs::write(&file, cp.to_string()).unwrap();
    let out = run(&["check", "-f", file.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("warning: spec.options[projectmapings]"));
}

fn review(kind: &str, group: &str, version: &str, object: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
        "name": "x", "namespace": "migrationnamespace", "operation": "CREATE",
        "userInfo": {"username": "admin"}, "object": object, "oldObject": null, "dryRun": false}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_denies_a_misspelt_stork_field_and_warns_on_a_many_to_one_table() {
    let s = start_validate_only(rancher_remap::rewrite::MutateSettings::default()).await;
    let c = s.client(&s.ca, false);
    let token = example_pair()["spec"]["config"]["users"]["stork-migrator"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    for (typo, path, meant) in TYPOS {
        let cp = misspelt(typo);
        let (status, answer) = post(
            &c,
            &s.url("/validate"),
            &review("ClusterPair", "stork.libopenstorage.org", "v1alpha1", cp),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(answer["response"]["allowed"], false, "{typo}: {answer}");
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{path}: unknown field"))
                && message.contains(&format!("did you mean `{meant}`?")),
            "{typo}: {message}"
        );
        assert!(!answer.to_string().contains(&token));
    }

    // Two source projects onto one: allowed, with a warning naming both entries.
    let mut cp = example_pair();
    cp["spec"]["platformOptions"]["rancher"]["projectMappings"]["p-cd56e"] = json!("p-xy99z");
    cp["spec"]["platformOptions"]["rancher"]["projectMappings"]["c-7gh2k:p-cd56e"] =
        json!("c-m-4kq8z9rt:p-xy99z");
    let (_, answer) = post(
        &c,
        &s.url("/validate"),
        &review("ClusterPair", "stork.libopenstorage.org", "v1alpha1", cp),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let warnings = answer["response"]["warnings"].to_string();
    assert!(
        warnings.contains("spec.platformOptions.rancher.projectMappings[c-7gh2k:p-cd56e]: entries \\\"c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z\\\" and \\\"c-7gh2k:p-cd56e=c-m-4kq8z9rt:p-xy99z\\\" both map to project p-xy99z"),
        "{warnings}"
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "rancher-remap-mappings", "namespace": "rancher-remap",
                     "labels": {"rancher-remap.io/mappings": "true"}},
        "data": {"a.b": "p-a=p-z\np-b=p-z\n"}});
    let (_, answer) = post(&c, &s.url("/validate"), &review("ConfigMap", "", "v1", cm)).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert!(
        answer["response"]["warnings"]
            .to_string()
            .contains("both map to project p-z"),
        "{answer}"
    );
}

const MANY_TO_ONE: &str = "apiVersion: stork.libopenstorage.org/v1alpha1
kind: ClusterPair
metadata: {name: remote, namespace: mig}
spec:
  platformOptions:
    rancher:
      projectMappings: {p-a: p-z, p-b: p-z, p-c: p-y}
";

#[test]
fn check_and_derive_warn_on_a_many_to_one_table_and_derive_reverse_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("mappings.txt");
    std::fs::write(&text, "p-a=p-z,p-b=p-z\n").unwrap();
    let out = run(&["check", "-f", text.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("mappings: warning: project-mappings[p-b]: entries \"p-a=p-z\" and \"p-b=p-z\" both map to project p-z"),
        "{}",
        stdout(&out)
    );

    let out = run(&["derive", "-f", "-"], MANY_TO_ONE);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: data[mig.remote]: entries \"p-a=p-z\" (data key mig.remote) and \"p-b=p-z\" (data key mig.remote) both map to project p-z"),
        "{}",
        stderr(&out)
    );

    let out = run(&["derive", "--reverse", "-f", "-"], MANY_TO_ONE);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains("error: ClusterPair mig/remote: spec.platformOptions.rancher.projectMappings[p-b]: --reverse: entries \"p-a=p-z\" and \"p-b=p-z\" both map to project p-z"),
        "{said}"
    );
    // The one-to-one part alone reverses.
    let one_to_one = MANY_TO_ONE.replace("p-b: p-z, ", "");
    let out = run(
        &["derive", "--reverse", "-o", "json", "-f", "-"],
        &one_to_one,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cm: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cm["data"]["mig.remote"], "p-z=p-a\np-y=p-c\n");
}
