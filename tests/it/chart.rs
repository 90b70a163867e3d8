//! The chart as a user meets it before installing: `helm show readme` and `helm show chart`, the
//! `ci/*-values.yaml` that lint it in each role and certificate mode, and values it refuses with
//! a sentence saying what to set (never a JSON-schema path or a regular expression).

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::Value;

use crate::common::{repo, stderr, stdout, tool};
use crate::deploy::{helm_template, Certs};

const CHART: &str = "charts/rancher-remap";

/// `helm ARGS… CHART` with the pinned helm.
fn helm(args: &[&str]) -> std::process::Output {
    tool("helm").args(args).output().unwrap()
}

/// The chart's ci/*-values.yaml files, sorted.
fn ci_values() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo(CHART).join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    files
}

/// The certificate mode a values document asks for, as the chart reads it.
fn cert_mode(values: &Value) -> Certs {
    let cert_manager = values["certManager"]["enabled"] == true;
    let issuer = values["certManager"]["issuerRef"]["name"].is_string();
    let secret = values["tls"]["existingSecret"]
        .as_str()
        .is_some_and(|s| !s.is_empty());
    match (cert_manager, issuer, secret) {
        (true, true, _) => Certs::CertManagerIssuer,
        (true, false, _) => Certs::CertManager,
        (false, _, true) => Certs::ExistingSecret,
        (false, _, false) => Certs::ServerMade,
    }
}

#[test]
fn ci_values_lint_each_role_in_each_certificate_mode_and_the_bare_chart_says_what_is_missing() {
    let chart = repo(CHART);
    let chart = chart.to_str().unwrap();
    let mut covered = BTreeSet::new();
    for file in ci_values() {
        let out = helm(&["lint", "--strict", chart, "-f", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            stdout(&out),
            stderr(&out)
        );
        let text = std::fs::read_to_string(&file).unwrap();
        let values = &rancher_remap::manifest::parse_documents(&text).unwrap()[0];
        let role = values["role"]
            .as_str()
            .expect("each ci file names its role");
        covered.insert(format!("{role} {:?}", cert_mode(values)));
    }
    let mut wanted = BTreeSet::new();
    for role in ["destination", "source"] {
        for certs in [
            Certs::ServerMade,
            Certs::CertManager,
            Certs::CertManagerIssuer,
            Certs::ExistingSecret,
        ] {
            wanted.insert(format!("{role} {certs:?}"));
        }
    }
    assert_eq!(covered, wanted);

    // Without values the chart still fails (lint and install), saying what to set and why.
    let lint = helm(&["lint", "--strict", chart]);
    assert!(!lint.status.success());
    let said = format!("{}{}", stdout(&lint), stderr(&lint));
    assert!(
        said.contains("image.repository is required: set it to where you pushed"),
        "{said}"
    );
    let install = helm(&["template", "rancher-remap", chart]);
    assert!(!install.status.success());
    let said = stderr(&install);
    assert!(
        said.contains("image.repository is required") && !said.contains("minLength"),
        "{said}"
    );
    let no_cluster = helm(&[
        "template",
        "rancher-remap",
        chart,
        "--set",
        "image.repository=registry.example.com/rancher-remap",
    ]);
    let said = stderr(&no_cluster);
    assert!(
        said.contains(
            "clusterId is required with role=destination: set it to this cluster's Rancher ID"
        ),
        "{said}"
    );
}

/// Values the chart refuses, and what it says (the fix).
fn wrong_values(pem_file: &str, not_a_cert: &str) -> Vec<(Certs, Vec<String>, &'static str)> {
    let s = |v: &str| vec!["--set".to_string(), v.to_string()];
    vec![
        (
            Certs::ServerMade,
            s("image.repository=registry.example.com/rancher-remap:0.1.0"),
            "carries a tag: set the repository alone and the tag as image.tag, e.g. --set image.repository=registry.example.com/rancher-remap --set image.tag=0.1.0",
        ),
        (
            Certs::ServerMade,
            s("image.repository=registry.example.com:5000/rancher-remap@sha256:0123"),
            "carries a digest: set the repository alone",
        ),
        (
            Certs::ExistingSecret,
            s("certManager.enabled=true"),
            "certManager.enabled=true and tls.existingSecret=corp-webhook-tls are two ways to get the serving certificate: choose one",
        ),
        (
            Certs::ServerMade,
            s("tls.existingSecret=s"),
            "tls.caBundle is required with tls.existingSecret=s",
        ),
        (
            Certs::ServerMade,
            [s("tls.existingSecret=s"), vec!["--set-file".into(), format!("tls.caBundle={pem_file}")]].concat(),
            "tls.caBundle holds PEM text: it takes the CA certificate's PEM base64-encoded, as a caBundle field does; base64-encode it",
        ),
        (
            Certs::ServerMade,
            s(&format!("tls.existingSecret=s,tls.caBundle={not_a_cert}")),
            "tls.caBundle is not the base64 of a PEM certificate",
        ),
        (
            Certs::ServerMade,
            s("mappings.inline.a=p-a: p-b"),
            "mappings.inline.a: entry \"p-a: p-b\" has no '=': did you mean \"p-a=p-b\"?",
        ),
        (
            Certs::ServerMade,
            s("mappings.inline.a=c-1:p-a: c-2:p-b"),
            "did you mean \"c-1:p-a=c-2:p-b\"?",
        ),
        (
            Certs::ServerMade,
            s("mappings.inline.a=p-a=p-b\\,"),
            "mappings.inline.a has an empty entry (a trailing or doubled comma)",
        ),
        (
            Certs::ServerMade,
            s("mappings.inline.a=P-A=p-b"),
            "entry \"P-A=p-b\" is not src=dst with project IDs",
        ),
        (
            Certs::ServerMade,
            s("mappings.inline.a=p-a=c-2:p-b"),
            "maps a value of one form to the other",
        ),
        (
            Certs::ServerMade,
            vec!["--set-string".into(), "mappings.inline.a= ".into()],
            "mappings.inline.a has no entries",
        ),
        (
            Certs::ServerMade,
            s("clusterId=c-m:p-x"),
            "clusterId \"c-m:p-x\" is not a Rancher cluster ID",
        ),
    ]
}

#[test]
fn wrong_values_are_refused_with_the_fix() {
    let pem_ca = {
        let g = rancher_remap::cli::certs::generate("corp", "corp", 30).unwrap();
        g.ca.cert
    };
    let not_a_cert = base64::engine::general_purpose::STANDARD.encode("CA");
    let dir = tempfile::tempdir().unwrap();
    let pem_file = dir.path().join("ca.crt");
    std::fs::write(&pem_file, &pem_ca).unwrap();
    let pem_file = pem_file.to_str().unwrap();
    for (certs, sets, says) in wrong_values(pem_file, &not_a_cert) {
        let args: Vec<&str> = sets.iter().map(String::as_str).collect();
        let err = helm_template("destination", certs, &args)
            .err()
            .unwrap_or_else(|| panic!("{sets:?} was accepted"));
        assert!(err.contains(says), "{sets:?}: {err}");
        // A sentence, not the schema's jargon or a regular expression.
        for jargon in ["minLength", "does not match pattern", "[a-z0-9]"] {
            assert!(!err.contains(jargon), "{sets:?}: {err}");
        }
    }
    // What the README's examples set is accepted.
    helm_template(
        "destination",
        Certs::ServerMade,
        &[
            "--set-string",
            "mappings.inline.stork\\.pair-a=p-a=p-b\n\nc-1:p-a = c-2:p-b\n",
            "--set",
            "image.tag=0.1.0",
            "--set",
            "image.repository=registry.example.com:5000/team/rancher-remap",
        ],
    )
    .unwrap();
}

#[test]
fn helm_show_explains_the_chart_and_its_kubernetes_floor_matches_the_changelog() {
    let chart = repo(CHART);
    let chart = chart.to_str().unwrap();
    let readme = stdout(&helm(&["show", "readme", chart]));
    for says in [
        "role: destination",
        "helm install rancher-remap rancher-remap-",
        "helm push dist/rancher-remap-",
        "### Certificates",
        "### Values refused, and the fix",
        "## Uninstall",
        "kubectl -n rancher-remap delete secret rancher-remap-certs",
        "Kubernetes 1.32 or later",
    ] {
        assert!(readme.contains(says), "helm show readme: no {says:?}");
    }
    let meta = &rancher_remap::manifest::parse_documents(&stdout(&helm(&["show", "chart", chart])))
        .unwrap()[0];
    assert_eq!(meta["kubeVersion"], ">=1.32.0-0");
    let icon = meta["icon"].as_str().expect("an icon");
    // Shipped in the chart: no network to show it.
    let svg = icon
        .strip_prefix("data:image/svg+xml;base64,")
        .expect("a data URL");
    let svg = base64::engine::general_purpose::STANDARD
        .decode(svg)
        .unwrap();
    assert!(String::from_utf8(svg).unwrap().starts_with("<svg"));
    assert!(meta["keywords"].as_array().unwrap().len() >= 4);
    // The CHANGELOG claims the same floor, and nothing older.
    let changelog = std::fs::read_to_string(repo("CHANGELOG.md")).unwrap();
    let row = changelog
        .lines()
        .find(|l| l.starts_with("| Kubernetes |"))
        .unwrap();
    assert!(
        row.contains("1.32 or later") && row.contains(">=1.32.0-0"),
        "{row}"
    );
    for older in ["1.28", "1.29", "1.30 or later"] {
        assert!(!row.contains(older), "{row}");
    }
}

/// export-policy's output for cluster `cluster`, leaving out namespace `ns`, in a file.
fn exported_policy(dir: &std::path::Path, cluster: &str, ns: &str) -> String {
    let out = crate::common::run(
        &[
            "export-policy",
            "--project-mappings",
            &format!("p-a=p-b,c-src:p-a={cluster}:p-b"),
            "--cluster-id",
            cluster,
            "-n",
            ns,
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let file = dir.join(format!("{cluster}-{ns}.yaml"));
    std::fs::write(&file, &out.stdout).unwrap();
    file.to_str().unwrap().to_string()
}

/// Objects that are not export-policy's output for this cluster and namespace, unchanged, are
/// refused, saying what to run (`good` is that output, for cluster `this`).
fn refuses_what_export_policy_did_not_print(dir: &std::path::Path, this: &str, good: &str) {
    let file = |f: &str| format!("policy={f}");
    let other_cluster = exported_policy(dir, "c-elsewhere", "rancher-remap");
    let other_ns = exported_policy(dir, this, "elsewhere");
    let hand_made = dir.join("hand-made.yaml");
    std::fs::write(
        &hand_made,
        std::fs::read_to_string(good)
            .unwrap()
            .replace("rancher-remap.io/export-policy", "x"),
    )
    .unwrap();
    let half = dir.join("half.yaml");
    let text = std::fs::read_to_string(good).unwrap();
    std::fs::write(&half, &text[..text.rfind("---").unwrap()]).unwrap();
    // Edited exports: a binding narrowed to nothing, a policy that fails open, one that selects
    // the namespaces it should leave out.
    let edited = |name: &str, from: &str, to: &str| {
        let path = dir.join(name);
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let narrowed = edited(
        "narrowed.yaml",
        "  policyName: rancher-remap-metadata\n",
        "  policyName: rancher-remap-metadata\n  matchResources:\n    objectSelector:\n      matchLabels: {nothing: matches}\n",
    );
    let fails_open = edited("open.yaml", "failurePolicy: Fail", "failurePolicy: Ignore");
    let selects = edited("selects.yaml", "operator: NotIn", "operator: In");
    let old = dir.join("old.yaml");
    std::fs::write(&old, format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rancher-remap-policy-params\n---\n{text}")).unwrap();
    for (sets, says) in [
        (vec!["--set", "rewrite=policy"], "rewrite=policy needs policy: the YAML export-policy prints. Make it with rancher-remap export-policy --mappings-file mappings.yaml --cluster-id"),
        (vec!["--set", "rewrite=policy", "--set-file", &file(&other_cluster)], "policy was exported for cluster \"c-elsewhere\""),
        (vec!["--set", "rewrite=both", "--set-file", &file(&other_ns)], "export it with -n rancher-remap"),
        (vec!["--set", "rewrite=policy", "--set-file", &file(hand_made.to_str().unwrap())], "which is not one of the objects rancher-remap export-policy prints"),
        (vec!["--set", "rewrite=policy", "--set-file", &file(half.to_str().unwrap())], "not all four objects rancher-remap export-policy prints"),
        (vec!["--set", "rewrite=policy", "--set-file", &file(old.to_str().unwrap())], "policy holds ConfigMap/rancher-remap-policy-params"),
        (vec!["--set", "rewrite=policy", "--set-file", &file(good), "--set", "mappings.inline.a=p-a=p-b"], "mappings.inline is the webhook's table"),
        (vec!["--set", "rewrite=policy", "--set-file", &file(&narrowed)], "binds with more than policyName"),
        (vec!["--set", "rewrite=policy", "--set-file", &file(&fails_open)], "has failurePolicy \"Ignore\", not export-policy's Fail"),
        (vec!["--set", "rewrite=policy", "--set-file", &file(&selects)], "selects namespaces with In"),
    ] {
        let err = helm_template("destination", Certs::ServerMade, &sets)
            .err()
            .unwrap_or_else(|| panic!("{sets:?} was accepted"));
        assert!(err.contains(says), "{sets:?}: {err}");
    }
}

/// `rewrite=policy` installs export-policy's objects as it printed them, and nothing of the
/// server; `both`, them and the server; anything but its output for this cluster and namespace
/// is refused with what to run.
#[test]
fn the_policies_are_installed_alone_or_beside_the_webhook_and_only_export_policys() {
    // The clusterId `helm_template` sets.
    let this = "c-m-dst01";
    let dir = tempfile::tempdir().unwrap();
    let good = exported_policy(dir.path(), this, "rancher-remap");
    let file = |f: &str| format!("policy={f}");
    let kinds = |docs: &[Value]| -> BTreeSet<String> {
        docs.iter()
            .map(|d| d["kind"].as_str().unwrap().to_string())
            .collect()
    };
    let alone = helm_template(
        "destination",
        Certs::ServerMade,
        &["--set", "rewrite=policy", "--set-file", &file(&good)],
    )
    .unwrap();
    let printed =
        rancher_remap::manifest::parse_objects(&std::fs::read_to_string(&good).unwrap()).unwrap();
    assert_eq!(
        alone, printed,
        "as export-policy printed them, and nothing else"
    );
    let both = helm_template(
        "destination",
        Certs::ServerMade,
        &["--set", "rewrite=both", "--set-file", &file(&good)],
    )
    .unwrap();
    let webhook = helm_template("destination", Certs::ServerMade, &[]).unwrap();
    let mut want = kinds(&webhook);
    assert!(!want.contains("MutatingAdmissionPolicy"));
    want.extend(kinds(&printed));
    assert_eq!(kinds(&both), want);
    assert!(printed.iter().all(|p| both.contains(p)));

    refuses_what_export_policy_did_not_print(dir.path(), this, &good);
    let err = helm_template("source", Certs::ServerMade, &["--set", "rewrite=policy"]).unwrap_err();
    assert!(
        err.contains("rewrite=policy needs role=destination"),
        "{err}"
    );
}
