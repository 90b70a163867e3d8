//! The offline commands, run as a user would run them.

use base64::Engine;
use serde_json::{json, Value};

use crate::common::*;

const MAPPINGS: &str = "p-ab12c=p-xy99z,c-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z";
const KEY: &str = "field.cattle.io/projectId";

/// `rewrite --project-mappings MAPPINGS ARGS...`, fed `stdin`.
fn rewrite(mappings: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut all = vec!["rewrite", "--project-mappings", mappings];
    all.extend_from_slice(args);
    run(&all, stdin)
}

#[test]
fn rewrite_json_object_from_stdin() {
    let dep = fixture_object("create-deployment-migrated.json").to_string();
    let out = rewrite(MAPPINGS, &["-o", "json", "-f", "-"], &dep);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v["kind"], "Deployment",
        "a single object is printed as itself"
    );
    assert_eq!(v["metadata"]["labels"][KEY], "p-xy99z");
    assert_eq!(v["metadata"]["annotations"][KEY], "c-m-4kq8z9rt:p-xy99z");
    let sel = &v["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"][0]["namespaceSelector"];
    assert_eq!(
        sel["matchExpressions"][0]["values"],
        json!(["p-xy99z", "p-cd56e"]),
        "unmapped selector value kept"
    );
    let err = stderr(&out);
    assert!(err.contains("p-ab12c -> p-xy99z"), "{err}");
    assert!(
        err.contains("\"p-cd56e\"") && err.contains("never shortened"),
        "{err}"
    );
}

#[test]
fn rewrite_yaml_stream_keeps_order_and_lists_expand() {
    let out = run(
        &["rewrite", "--mappings-file", repo("deploy/examples/mappings.txt").to_str().unwrap(), "-f", repo("deploy/examples/migrated-objects.json").to_str().unwrap(), "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: last\n  labels:\n    field.cattle.io/projectId: p-cd56e\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let docs = rancher_remap::manifest::parse_objects(&stdout(&out)).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Namespace", "Deployment", "NetworkPolicy", "Namespace"]
    );
    assert_eq!(docs[3]["metadata"]["labels"][KEY], "p-gh34k");
    assert!(!stdout(&out).contains("p-ab12c"));
}

#[test]
fn rewrite_json_several_objects_is_a_list() {
    let out = rewrite(
        MAPPINGS,
        &[
            "-o",
            "json",
            "-f",
            repo("deploy/examples/migrated-objects.json")
                .to_str()
                .unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (v["apiVersion"].as_str(), v["kind"].as_str()),
        (Some("v1"), Some("List"))
    );
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
}

#[test]
fn rewrite_drop_removes_unmapped_labels() {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {KEY: "p-nope"}}});
    let out = rewrite(MAPPINGS, &["-o", "json", "-f", "-"], &ns.to_string());
    assert!(out.status.success());
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["metadata"]["labels"].get(KEY).is_none());
    assert!(
        stderr(&out).contains("1 unmapped (1 removed)"),
        "{}",
        stderr(&out)
    );
    let out = rewrite(
        MAPPINGS,
        &["--unmapped", "keep", "-o", "json", "-f", "-"],
        &ns.to_string(),
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["metadata"]["labels"][KEY], "p-nope");
}

#[test]
fn rewrite_deny_exits_1_with_reason_and_no_output() {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {KEY: "p-nope"}}});
    let out = rewrite(
        MAPPINGS,
        &["--unmapped", "deny", "-f", "-"],
        &ns.to_string(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("Namespace x") && err.contains(KEY) && err.contains("\"p-nope\""),
        "{err}"
    );
}

#[test]
fn rewrite_refuses_invalid_mappings_and_input() {
    let out = rewrite("p-a=p-b,p-c: p-d", &["-f", "-"], "{}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did you mean \"p-c=p-d\""),
        "{}",
        stderr(&out)
    );
    let out = rewrite("p-a=p-b,p-b=p-c", &["-f", "-"], "{}");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("chain"), "{}", stderr(&out));
    let out = rewrite(MAPPINGS, &["-f", "-"], "{ not json");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid JSON"), "{}", stderr(&out));
    let out = rewrite(MAPPINGS, &["-f", "/nonexistent/file.yaml"], "");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn rewrite_needs_exactly_one_mapping_source() {
    let out = run(&["rewrite", "-f", "-"], "");
    assert_eq!(out.status.code(), Some(2), "usage error");
    let out = rewrite(MAPPINGS, &["--mappings-file", "x", "-f", "-"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn audit_and_export_policy_without_a_mapping_source_are_usage_errors_before_any_cluster() {
    // No kubeconfig and no in-cluster environment: a cluster error (exit 1) would mean the
    // source was checked too late.
    let home = tempfile::tempdir().unwrap();
    for command in ["audit", "export-policy"] {
        let out = bin()
            .args([command, "--cluster-id", "c-a"])
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        let wanted =
            "error: give one of --project-mappings, --mappings-file or --mappings-configmap\n";
        assert_eq!(stderr(&out), wanted, "{command}");
        assert!(stdout(&out).is_empty(), "{command}");
    }
}

#[test]
fn serve_needs_a_mapping_source_or_validate_only() {
    let out = run(&["serve"], "");
    assert_eq!(out.status.code(), Some(2), "usage error");
    assert!(stderr(&out).contains("--validate-only"), "{}", stderr(&out));
    let out = run(
        &["serve", "--validate-only", "--project-mappings", MAPPINGS],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be used with a mapping source"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn certs_make_a_ca_and_renew_the_serving_pair_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let made = run(
        &[
            "certs",
            "--out",
            out,
            "--service",
            "hook",
            "--namespace",
            "ns",
        ],
        "",
    );
    assert!(made.status.success(), "{}", stderr(&made));
    let ca = read("ca.crt");
    let bundle = base64::engine::general_purpose::STANDARD.encode(&ca);
    assert_eq!(stdout(&made).trim(), bundle, "stdout is the caBundle");
    for name in [
        "hook.ns.svc",
        "hook.ns.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ] {
        verifies(&ca, &read("tls.crt"), name).unwrap();
    }
    assert!(verifies(&ca, &read("tls.crt"), "other.ns.svc").is_err());

    // Renewal: same CA and caBundle, a new key and certificate that verify against it.
    let (old_cert, old_key) = (read("tls.crt"), read("tls.key"));
    let renewed = run(
        &[
            "certs",
            "--out",
            out,
            "--service",
            "hook",
            "--namespace",
            "ns",
            "--reuse-ca",
        ],
        "",
    );
    assert!(renewed.status.success(), "{}", stderr(&renewed));
    assert_eq!(stdout(&renewed).trim(), bundle);
    assert_eq!(read("ca.crt"), ca);
    assert_ne!(read("tls.crt"), old_cert);
    assert_ne!(read("tls.key"), old_key);
    verifies(&ca, &read("tls.crt"), "hook.ns.svc").unwrap();

    // A serving certificate may not outlive its CA (ten times --days by default).
    let short = tempfile::tempdir().unwrap();
    let short = short.path().to_str().unwrap();
    assert!(run(&["certs", "--out", short, "--days", "10"], "")
        .status
        .success());
    let too_long = run(
        &["certs", "--out", short, "--reuse-ca", "--days", "200"],
        "",
    );
    assert_eq!(too_long.status.code(), Some(1));
    assert!(
        stderr(&too_long).contains("CA expires"),
        "{}",
        stderr(&too_long)
    );
    // Nothing to reuse.
    let empty = tempfile::tempdir().unwrap();
    let none = run(
        &[
            "certs",
            "--out",
            empty.path().to_str().unwrap(),
            "--reuse-ca",
        ],
        "",
    );
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("ca.crt"), "{}", stderr(&none));
}

#[test]
fn certs_keeps_an_existing_ca_and_checks_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert!(run(&["certs", "--out", out], "").status.success());
    let (ca, ca_key) = (read("ca.crt"), read("ca.key"));
    // A second run would replace the CA every webhook configuration trusts: refused.
    let again = run(&["certs", "--out", out], "");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already holds a CA") && stderr(&again).contains("--force"),
        "{}",
        stderr(&again)
    );
    assert_eq!((read("ca.crt"), read("ca.key")), (ca.clone(), ca_key));
    // --force replaces it; keys left world-readable by someone are narrowed before they are
    // filled, and every key is 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    std::fs::set_permissions(
        dir.path().join("tls.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let forced = run(&["certs", "--out", out, "--force"], "");
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(read("ca.crt"), ca);
    for key in ["ca.key", "tls.key"] {
        assert_eq!(mode(key), 0o600, "{key}");
    }
    assert_eq!(mode("tls.crt") & 0o600, 0o600);

    // Inputs that would panic, expire at once or make SANs no client matches.
    let fresh = tempfile::tempdir().unwrap();
    let fresh = fresh.path().to_str().unwrap();
    for (args, says) in [
        (vec!["--days", "300000"], "1..=3650"),
        (vec!["--days", "0"], "1..=3650"),
        (vec!["--days", "-1"], "-1"),
        (vec!["--service", "Bad_Name"], "DNS-1123"),
        (vec!["--namespace", "NS!"], "DNS-1123"),
        (vec!["--service", ""], "DNS-1123"),
        (vec!["--reuse-ca", "--force"], "cannot be used with"),
    ] {
        let mut all = vec!["certs", "--out", fresh];
        all.extend(&args);
        let o = run(&all, "");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}");
        assert!(
            std::fs::read_dir(fresh).unwrap().next().is_none(),
            "{args:?}: nothing written"
        );
    }
    // The longest allowed works, and its CA (ten times as long) too.
    let o = run(&["certs", "--out", fresh, "--days", "3650"], "");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn derive_from_clusterpair() {
    let out = run(
        &[
            "derive",
            "-f",
            repo("deploy/examples/clusterpair.yaml").to_str().unwrap(),
            "--namespace",
            "remap",
            "-o",
            "json",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cm: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "rancher-remap-mappings");
    assert_eq!(cm["metadata"]["namespace"], "remap");
    assert_eq!(
        cm["metadata"]["labels"]["rancher-remap.io/mappings"],
        "true"
    );
    assert_eq!(
        cm["metadata"]["annotations"]["rancher-remap.io/migration-users"],
        "system:serviceaccount:kube-system:stork-migrator"
    );
    let text = cm["data"]["migrationnamespace.remotecluster"]
        .as_str()
        .unwrap();
    assert!(text.lines().any(|l| l == "p-ab12c=p-xy99z"), "{text}");
    // What to install with, on stderr (stdout stays the ConfigMap alone).
    let said = stderr(&out);
    assert!(
        said.contains("destination cluster: c-m-4kq8z9rt")
            && said.contains("--set clusterId=c-m-4kq8z9rt")
            && said.contains("migration users: system:serviceaccount:kube-system:stork-migrator"),
        "{said}"
    );
    // The derived ConfigMap is a mappings file, and the committed example is what derive prints.
    let committed =
        std::fs::read_to_string(repo("deploy/examples/mappings-configmap.yaml")).unwrap();
    let yaml = run(
        &[
            "derive",
            "-f",
            repo("deploy/examples/clusterpair.yaml").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(stdout(&yaml), committed);
    // The token never leaves.
    let token_part = "eyJpc3Mi";
    assert!(!stdout(&out).contains(token_part) && !stderr(&out).contains(token_part));
}

#[test]
fn derive_reverse_swaps_and_skips_identity() {
    let out = run(
        &[
            "derive",
            "--reverse",
            "-o",
            "json",
            "-f",
            repo("deploy/examples/clusterpair.yaml").to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cm: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let text = cm["data"]["migrationnamespace.remotecluster"]
        .as_str()
        .unwrap();
    assert!(text.lines().any(|l| l == "p-xy99z=p-ab12c"), "{text}");
    assert!(cm["metadata"].get("annotations").is_none());
    assert!(stderr(&out).contains("--migration-user"));
}

#[test]
fn derive_refuses_invalid_mapping_and_reverse_conflicts() {
    let cp = |m: &str| {
        format!("apiVersion: stork.libopenstorage.org/v1alpha1\nkind: ClusterPair\nmetadata: {{name: p, namespace: ns}}\nspec:\n  platformOptions:\n    rancher:\n      projectMappings: {m}\n")
    };
    let out = run(&["derive", "-f", "-"], &cp("{p-a: p-b, p-b: p-c}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("spec.platformOptions.rancher.projectMappings[p-"),
        "{}",
        stderr(&out)
    );
    // Many-to-one is fine forward, but cannot be reversed.
    let many = cp("{p-a: p-z, p-b: p-z}");
    assert!(run(&["derive", "-f", "-"], &many).status.success());
    let out = run(&["derive", "--reverse", "-f", "-"], &many);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("p-z"), "{}", stderr(&out));
}

#[test]
fn help_explains_flags() {
    let out = run(&["rewrite", "--help"], "");
    let help = stdout(&out);
    for flag in [
        "--project-mappings",
        "--mappings-file",
        "--unmapped",
        "--output",
        "--filename",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn check_passes_the_examples_with_their_warnings() {
    let out = run(
        &[
            "check",
            "-f",
            repo("deploy/examples/clusterpair.yaml").to_str().unwrap(),
            repo("deploy/examples/mappings-configmap.yaml")
                .to_str()
                .unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("ClusterPair migrationnamespace/remotecluster: warning: spec.config.clusters[destination].insecure-skip-tls-verify"),
        "{text}"
    );
    assert!(
        text.contains("ConfigMap rancher-remap/rancher-remap-mappings: ok"),
        "{text}"
    );
    assert!(stderr(&out).contains("2 checked: 0 errors, 1 warnings"));
}

#[test]
fn check_lists_every_error_with_its_path_and_exits_1() {
    // Two documents on stdin: a broken ClusterPair, and a Deployment that is not checked.
    let docs = r#"
apiVersion: stork.libopenstorage.org/v1alpha1
kind: ClusterPair
metadata: {name: remote, namespace: mig}
spec:
  config:
    clusters: {dst: {server: "10.0.0.1:6443"}}
    contexts: {ctx: {cluster: dst, user: nobody}}
    users: {}
    current-context: ctx
  options: {token: "the-secret-token-value"}
  platformOptions:
    rancher:
      projectMappings: {p-a: p-b, p-c: p-b, "p-d": ""}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
"#;
    let out = run(&["check", "-f", "-"], docs);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    for path in [
        "spec.config.clusters[dst].server",
        "spec.config.contexts[ctx].user",
        "spec.platformOptions.rancher.projectMappings[p-d]",
    ] {
        assert!(
            text.contains(&format!("<stdin>: ClusterPair mig/remote: error: {path}"))
                || text.contains(&format!("-: ClusterPair mig/remote: error: {path}")),
            "{path} missing in:\n{text}"
        );
    }
    assert!(stderr(&out).contains("Deployment shop/web: skipped"));
    assert!(
        !text.contains("the-secret-token-value")
            && !stderr(&out).contains("the-secret-token-value")
    );
}

#[test]
fn check_with_nothing_to_check_fails() {
    let out = run(
        &["check", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no ClusterPair, mapping ConfigMap or mapping text"),
        "{}",
        stderr(&out)
    );
}

/// `check` takes the plain `src=dst` text `serve` and `rewrite` take, and `-o json` for scripts.
#[test]
fn check_reads_mapping_text_and_answers_in_json() {
    let ok = run(
        &["check", "-f", "-"],
        "p-ab12c=p-xy99z\nc-7gh2k:p-ab12c=c-m-4kq8z9rt:p-xy99z\n",
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(stdout(&ok), "-: mappings: ok\n");
    let bad = run(&["check", "-o", "json", "-f", "-"], "p-a=p-b, p-b=p-c");
    assert_eq!(bad.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&bad)).unwrap();
    let item = &v["checked"][0];
    assert_eq!(item["object"], "mappings");
    assert!(
        item["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("chain"),
        "{v}"
    );
    assert_eq!(item["errors"][0]["path"], "project-mappings[p-a]");
    // Objects in JSON too, one item each.
    let pair = repo("deploy/examples/clusterpair.yaml");
    let out = run(&["check", "-o", "json", "-f", pair.to_str().unwrap()], "");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["checked"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["checked"][0]["object"]
        .as_str()
        .unwrap()
        .starts_with("ClusterPair"));
}

/// `--version` names the version, the commit the binary was built from and its date.
#[test]
fn version_names_the_commit_and_its_date() {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(repo("."))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (commit, date) = (
        git(&["rev-parse", "--short=12", "HEAD"]),
        git(&["log", "-1", "--format=%cs"]),
    );
    let out = run(&["--version"], "");
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!(
            "rancher-remap {} (commit {commit}, {date})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn map_projects_takes_the_flags_of_its_contract() {
    let help = stdout(&run(&["map-projects", "--help"], ""));
    for flag in [
        "--source",
        "--destination",
        "--namespace",
        "--map",
        "--create-missing",
        "--kubeconfig",
        "--context",
        "--destination-kubeconfig",
        "--destination-context",
        "--output",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    // --map wants OLD=NEW: a usage error, before any call.
    let out = run(
        &[
            "map-projects",
            "--source",
            "a",
            "--destination",
            "b",
            "--map",
            "a",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("SOURCE NAME=DESTINATION NAME"));
}

#[test]
fn map_projects_names_an_unreachable_management_cluster_never_its_credential() {
    // A port nothing listens on: the connection is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    const TOKEN: &str = "kubeconfig-token-SeCrEt0123456789";
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: rancher\n  cluster: {{server: \"https://127.0.0.1:{port}\"}}\nusers:\n- name: admin\n  user: {{token: {TOKEN}}}\ncontexts:\n- name: local\n  context: {{cluster: rancher, user: admin}}\ncurrent-context: local\n"),
    )
    .unwrap();
    let out = run(
        &[
            "map-projects",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--source",
            "prod-west",
            "--destination",
            "dr-east",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "cannot reach Rancher's management cluster at https://127.0.0.1:{port} (list clusters.management.cattle.io)"
        )),
        "{said}"
    );
    assert!(!said.contains(TOKEN), "{said}");
}
