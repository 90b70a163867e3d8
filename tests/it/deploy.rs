//! The install: both overlays rendered with `kubectl kustomize` (cert-manager and self-signed),
//! every document read back through its Kubernetes type, and the rules of a safe webhook
//! install checked on what an operator would actually apply.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use rancher_remap::mapping::objects::{DEFAULT_CONFIGMAP_NAME, MAPPINGS_LABEL};
use rancher_remap::rewrite::MIGRATED_ANNOTATION;

use crate::common::{bin, repo, stdout, verifies};

const NAMESPACE: &str = "rancher-remap";
const SERVICE_DNS: &str = "rancher-remap.rancher-remap.svc";

/// `kubectl kustomize DIR`, or `None` (with a loud message) when kubectl is not installed.
fn kustomize(dir: &std::path::Path) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: kubectl is not installed; the overlays were not rendered");
            return None;
        }
        Err(e) => panic!("kubectl: {e}"),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(rancher_remap::manifest::parse_documents(&stdout(&out)).unwrap())
}

/// The rendered install, indexed by kind.
struct Install {
    docs: Vec<Value>,
}

impl Install {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    /// The one object of `kind`, read through its Kubernetes type.
    fn one<T: DeserializeOwned + Serialize>(&self, kind: &str) -> T {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "exactly one {kind}");
        typed(found[0])
    }

    fn deployment(&self) -> Deployment {
        self.one("Deployment")
    }
}

/// Reads a document as `T` and back: a field the type does not know (a typo, a wrong level)
/// would be dropped on the way and fail the comparison.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
        panic!(
            "{} {}: {e}",
            doc["kind"],
            doc["metadata"]["name"].as_str().unwrap_or("?")
        )
    });
    // k8s-openapi writes apiVersion/kind itself; compare the rest.
    let without_type = |v: &Value| {
        let mut v = v.clone();
        let m = v.as_object_mut().unwrap();
        m.remove("apiVersion");
        m.remove("kind");
        v
    };
    let back = without_type(&serde_json::to_value(&t).unwrap());
    let orig = without_type(doc);
    assert_eq!(
        back, orig,
        "{} does not read back unchanged through its Kubernetes type",
        doc["kind"]
    );
    t
}

/// Every document of a kind k8s-openapi knows goes through its type; the others are
/// cert-manager's (checked separately).
fn check_types(install: &Install) {
    for d in &install.docs {
        match d["kind"].as_str().unwrap() {
            "Namespace" => drop(typed::<Namespace>(d)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(d)),
            "Role" => drop(typed::<Role>(d)),
            "RoleBinding" => drop(typed::<RoleBinding>(d)),
            "Service" => drop(typed::<Service>(d)),
            "Secret" => drop(secret(d)),
            "Deployment" => drop(typed::<Deployment>(d)),
            "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(d)),
            "MutatingWebhookConfiguration" => drop(typed::<MutatingWebhookConfiguration>(d)),
            "ValidatingWebhookConfiguration" => drop(typed::<ValidatingWebhookConfiguration>(d)),
            "Issuer" | "Certificate" => assert_eq!(d["apiVersion"], "cert-manager.io/v1"),
            other => panic!("unexpected kind {other} in the install"),
        }
        if d["kind"] != "MutatingWebhookConfiguration"
            && d["kind"] != "ValidatingWebhookConfiguration"
            && d["kind"] != "Namespace"
        {
            assert_eq!(d["metadata"]["namespace"], NAMESPACE, "{}", d["kind"]);
        }
    }
}

/// kustomize wraps Secret data at 76 columns; Go's base64 decoder (the API server's) skips the
/// newlines, k8s-openapi's does not, so they go before the typed read.
fn secret(doc: &Value) -> Secret {
    let mut doc = doc.clone();
    for v in doc["data"]
        .as_object_mut()
        .into_iter()
        .flat_map(|m| m.values_mut())
    {
        *v = Value::String(v.as_str().unwrap().replace('\n', ""));
    }
    typed(&doc)
}

/// Every webhook of either configuration, read as the fields both kinds share (a mutating
/// webhook is a validating one plus `reinvocationPolicy`, checked on its own type below).
fn all_hooks(install: &Install) -> Vec<ValidatingWebhook> {
    [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ]
    .into_iter()
    .flat_map(|kind| install.all(kind))
    .flat_map(|c| c["webhooks"].as_array().cloned().unwrap_or_default())
    .map(|w| serde_json::from_value(w).unwrap())
    .collect()
}

/// The namespaces a selector keeps out (`kubernetes.io/metadata.name NotIn [...]`).
fn excluded_namespaces(sel: Option<&LabelSelector>) -> HashSet<String> {
    sel.and_then(|s| s.match_expressions.as_ref())
        .into_iter()
        .flatten()
        .filter(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn")
        .flat_map(|e| e.values.clone().unwrap_or_default())
        .collect()
}

fn covers(rules: &[RuleWithOperations], group: &str, resource: &str, op: &str) -> bool {
    let has =
        |list: &Option<Vec<String>>, v: &str| list.iter().flatten().any(|x| x == "*" || x == v);
    rules
        .iter()
        .any(|r| has(&r.api_groups, group) && has(&r.resources, resource) && has(&r.operations, op))
}

/// Item 2 of the deploy issue, for every webhook; returns the hooks' paths by name.
fn check_webhooks(install: &Install) -> BTreeMap<String, String> {
    let mutating: Vec<MutatingWebhookConfiguration> = install
        .all("MutatingWebhookConfiguration")
        .into_iter()
        .map(typed)
        .collect();
    let validating: Vec<ValidatingWebhookConfiguration> = install
        .all("ValidatingWebhookConfiguration")
        .into_iter()
        .map(typed)
        .collect();
    let service: Service = install.one("Service");
    let webhook_port = service
        .spec
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("webhook"))
        .expect("a webhook port on the Service");
    assert_eq!(
        webhook_port.target_port,
        Some(IntOrString::String("webhook".into()))
    );

    let mut paths = BTreeMap::new();
    for h in all_hooks(install) {
        assert_eq!(h.side_effects, "None", "{}", h.name);
        assert_eq!(h.admission_review_versions, ["v1"], "{}", h.name);
        assert!(
            h.timeout_seconds.is_some_and(|t| (1..=10).contains(&t)),
            "{}",
            h.name
        );
        let policy = h.failure_policy.clone().expect("an explicit failurePolicy");
        let svc = h
            .client_config
            .service
            .as_ref()
            .expect("a service clientConfig");
        assert_eq!(svc.name, "rancher-remap");
        assert_eq!(svc.namespace, NAMESPACE);
        assert_eq!(svc.port, Some(webhook_port.port), "{}", h.name);
        assert!(
            h.client_config.url.is_none(),
            "{}: kube-apiserver calls the Service",
            h.name
        );
        let excluded = excluded_namespaces(h.namespace_selector.as_ref());
        assert!(excluded.contains("kube-system"), "{}", h.name);
        if !excluded.contains(NAMESPACE) {
            // The one exception: the mapping ConfigMap lives in our namespace. Under Fail that
            // would deadlock the bootstrap, so it must be Ignore, and narrowed to the label.
            assert_eq!(policy, "Ignore", "{}: sees its own namespace", h.name);
            let labels = h
                .object_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref());
            assert_eq!(
                labels
                    .and_then(|l| l.get(MAPPINGS_LABEL))
                    .map(String::as_str),
                Some("true"),
                "{}",
                h.name
            );
        }
        // Only writes that carry an object to rewrite or check.
        let rules = h.rules.as_deref().unwrap_or_default();
        assert!(!rules.is_empty(), "{}", h.name);
        for r in rules {
            for op in r.operations.iter().flatten() {
                assert!(op == "CREATE" || op == "UPDATE", "{}: {op}", h.name);
            }
        }
        paths.insert(h.name.clone(), svc.path.clone().unwrap_or_default());
    }

    for c in &mutating {
        for w in c.webhooks.iter().flatten() {
            assert_eq!(
                w.client_config.service.as_ref().unwrap().path.as_deref(),
                Some("/mutate")
            );
            assert!(w.reinvocation_policy.is_some(), "reinvocationPolicy chosen");
            let rules = w.rules.as_deref().unwrap_or_default();
            // Every kind SPEC §5 rewrites, created and updated.
            for (group, resource) in [
                ("", "namespaces"),
                ("", "pods"),
                ("", "podtemplates"),
                ("", "replicationcontrollers"),
                ("apps", "deployments"),
                ("apps", "replicasets"),
                ("apps", "statefulsets"),
                ("apps", "daemonsets"),
                ("batch", "jobs"),
                ("batch", "cronjobs"),
                ("networking.k8s.io", "networkpolicies"),
            ] {
                for op in ["CREATE", "UPDATE"] {
                    assert!(
                        covers(rules, group, resource, op),
                        "{group}/{resource} {op}"
                    );
                }
            }
            // The request filter must send exactly what --scope migrated rewrites.
            let conditions = w.match_conditions.as_deref().unwrap_or_default();
            let expr: String = conditions.iter().map(|c| c.expression.as_str()).collect();
            assert!(
                expr.contains(MIGRATED_ANNOTATION) && expr.contains("'Namespace'"),
                "{expr}"
            );
        }
    }
    for c in &validating {
        for w in c.webhooks.iter().flatten() {
            assert_eq!(
                w.client_config.service.as_ref().unwrap().path.as_deref(),
                Some("/validate")
            );
        }
    }
    let rules: Vec<RuleWithOperations> = validating
        .iter()
        .flat_map(|c| c.webhooks.iter().flatten())
        .flat_map(|w| w.rules.clone().unwrap_or_default())
        .collect();
    for op in ["CREATE", "UPDATE"] {
        assert!(covers(
            &rules,
            "stork.libopenstorage.org",
            "clusterpairs",
            op
        ));
    }
    paths
}

fn container(d: &Deployment) -> &Container {
    let spec = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(spec.containers.len(), 1);
    &spec.containers[0]
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// Items 3 and 4: the workload and its privileges.
fn check_workload(install: &Install) {
    let d = install.deployment();
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().unwrap();
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let selects = |sel: &LabelSelector| {
        sel.match_labels
            .iter()
            .flatten()
            .all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(selects(&spec.selector));

    let pdb: PodDisruptionBudget = install.one("PodDisruptionBudget");
    let pdb = pdb.spec.unwrap();
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert!(selects(pdb.selector.as_ref().unwrap()));

    let spread = pod
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default();
    assert!(spread
        .iter()
        .any(|t| t.topology_key == "kubernetes.io/hostname"
            && t.label_selector.as_ref().is_some_and(selects)));

    let service: Service = install.one("Service");
    assert!(service
        .spec
        .unwrap()
        .selector
        .unwrap()
        .iter()
        .all(|(k, v)| pod_labels.get(k) == Some(v)));

    let c = container(&d);
    let port = |name: &str| {
        c.ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("container port {name}"))
            .container_port
    };
    // The ports the server listens on are the ones the Service and the probes use.
    let listen_port = |var: &str| {
        env(c, var)
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .unwrap_or_else(|| panic!("{var}"))
            .port() as i32
    };
    assert_eq!(listen_port("RANCHER_REMAP_LISTEN"), port("webhook"));
    assert_eq!(listen_port("RANCHER_REMAP_ADMIN_LISTEN"), port("admin"));
    for (probe, path) in [
        (c.readiness_probe.as_ref(), "/readyz"),
        (c.liveness_probe.as_ref(), "/healthz"),
    ] {
        let get = probe.and_then(|p| p.http_get.as_ref()).expect(path);
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("admin".into()));
    }

    let res = c.resources.as_ref().unwrap();
    for map in [&res.requests, &res.limits] {
        let map = map.as_ref().unwrap();
        assert!(map.contains_key("cpu") && map.contains_key("memory"));
    }

    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    let ns: Namespace = install.one("Namespace");
    assert_eq!(
        ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    // Every setting the Deployment passes is one the binary reads.
    let help = stdout(&bin().args(["serve", "--help"]).output().unwrap());
    for e in c.env.iter().flatten() {
        if e.name.starts_with("RANCHER_REMAP_") {
            assert!(
                help.contains(&format!("[env: {}=", e.name)),
                "{} is not a serve setting",
                e.name
            );
        }
    }

    // The serving Secret is the one mounted.
    let mounted = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref()?.secret_name.clone())
        .expect("a Secret volume");
    let made_by_cert_manager = install
        .all("Certificate")
        .iter()
        .any(|c| c["spec"]["secretName"] == mounted.as_str());
    let rendered = install
        .all("Secret")
        .iter()
        .any(|s| s["metadata"]["name"] == mounted.as_str());
    assert!(made_by_cert_manager ^ rendered, "one source for {mounted}");

    // Least privilege: no cluster-wide grants, no Secrets, no wildcards.
    assert!(install.all("ClusterRole").is_empty() && install.all("ClusterRoleBinding").is_empty());
    for r in install.all("Role") {
        let role: Role = typed(r);
        for rule in role.rules.unwrap_or_default() {
            let words = rule
                .verbs
                .iter()
                .chain(rule.resources.iter().flatten())
                .chain(rule.api_groups.iter().flatten());
            for w in words {
                assert!(w != "*" && w != "secrets", "{w} in a Role");
            }
        }
    }
}

/// cert-manager's objects: the serving Certificate names the Service, its Issuer chain is in
/// the install, and every webhook configuration asks cainjector for its CA.
fn check_cert_manager(install: &Install) {
    let tls = install
        .all("Certificate")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "rancher-remap-tls")
        .expect("the serving Certificate");
    let dns: Vec<&str> = tls["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(dns.contains(&SERVICE_DNS), "{dns:?}");
    let issuers: HashSet<&str> = install
        .all("Issuer")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    for c in install.all("Certificate") {
        assert!(issuers.contains(c["spec"]["issuerRef"]["name"].as_str().unwrap()));
    }
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for c in install.all(kind) {
            assert_eq!(
                c["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                format!("{NAMESPACE}/rancher-remap-tls")
            );
        }
    }
}

fn rendered(overlay: &str) -> Option<Install> {
    let docs = kustomize(&repo("deploy").join(overlay))?;
    Some(Install { docs })
}

#[test]
fn destination_overlay_is_a_complete_safe_install() {
    let Some(install) = rendered("destination") else {
        return;
    };
    check_types(&install);
    let paths = check_webhooks(&install);
    assert_eq!(paths.len(), 3, "{paths:?}");
    check_workload(&install);
    check_cert_manager(&install);
    let d = install.deployment();
    let c = container(&d);
    assert_eq!(
        env(c, "RANCHER_REMAP_MAPPINGS_CONFIGMAP"),
        Some(format!("{NAMESPACE}/{DEFAULT_CONFIGMAP_NAME}").as_str())
    );
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "the watch needs a token"
    );
    let binding: RoleBinding = install.one("RoleBinding");
    assert_eq!(
        binding.subjects.unwrap()[0].name,
        pod.service_account_name.clone().unwrap()
    );
    assert!(install
        .all("ServiceAccount")
        .iter()
        .any(|s| s["metadata"]["name"] == "rancher-remap"));
}

#[test]
fn source_overlay_validates_only() {
    let Some(install) = rendered("source") else {
        return;
    };
    check_types(&install);
    let paths = check_webhooks(&install);
    assert!(paths.values().all(|p| p == "/validate"), "{paths:?}");
    check_workload(&install);
    check_cert_manager(&install);
    assert!(install.all("MutatingWebhookConfiguration").is_empty());
    assert!(
        install.all("Role").is_empty(),
        "a validator reads nothing from the API"
    );
    let d = install.deployment();
    assert_eq!(
        env(container(&d), "RANCHER_REMAP_VALIDATE_ONLY"),
        Some("true")
    );
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
}

/// The self-signed path: the Secret's certificate chains to the caBundle of every webhook, for
/// the Service's DNS name, and nothing of cert-manager is left.
#[test]
fn self_signed_render_fills_the_secret_and_every_ca_bundle() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: kubectl is not installed; the self-signed install was not rendered");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let render = |overlay: &str, dir: &std::path::Path, renew: bool| {
        let out = Command::new("bash")
            .arg(repo("scripts/render-self-signed"))
            .arg(overlay)
            .arg(env!("CARGO_BIN_EXE_rancher-remap"))
            .env("OUT_DIR", dir)
            .env("RENEW", if renew { "1" } else { "" })
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(dir.join("install.yaml")).unwrap()
    };
    for overlay in ["destination", "source"] {
        let dir = tempfile::tempdir().unwrap();
        let text = render(overlay, dir.path(), false);
        // Rendering again keeps the certificates; RENEW=1 replaces the serving pair only.
        assert_eq!(render(overlay, dir.path(), false), text);
        let renewed = render(overlay, dir.path(), true);
        let secret_of = |t: &str| {
            let docs = rancher_remap::manifest::parse_documents(t).unwrap();
            let s = docs.into_iter().find(|d| d["kind"] == "Secret").unwrap();
            (s["data"]["tls.crt"].clone(), s["data"]["ca.crt"].clone())
        };
        let ((old_cert, old_ca), (new_cert, new_ca)) = (secret_of(&text), secret_of(&renewed));
        assert_ne!(old_cert, new_cert, "{overlay}: a new serving certificate");
        assert_eq!(old_ca, new_ca, "{overlay}: the same CA");
        let bundles = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.contains("caBundle:"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            bundles(&text),
            bundles(&renewed),
            "{overlay}: caBundles unchanged"
        );
        let text = renewed;
        let install = Install {
            docs: rancher_remap::manifest::parse_documents(&text).unwrap(),
        };
        check_types(&install);
        check_webhooks(&install);
        check_workload(&install);
        assert!(install.all("Certificate").is_empty() && install.all("Issuer").is_empty());
        assert!(
            !text.contains("cert-manager.io"),
            "{overlay}: cert-manager left over"
        );

        let found = install.all("Secret");
        assert_eq!(found.len(), 1);
        let secret = secret(found[0]);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.data.unwrap();
        assert!(
            !data.contains_key("ca.key"),
            "the CA key stays on the operator's machine"
        );
        let cert = &data["tls.crt"].0;
        let mut bundles = Vec::new();
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            for c in install.all(kind) {
                for w in c["webhooks"].as_array().unwrap() {
                    let b64 = w["clientConfig"]["caBundle"].as_str().expect("a caBundle");
                    bundles.push(
                        base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .unwrap(),
                    );
                }
            }
        }
        assert!(!bundles.is_empty());
        for bundle in bundles {
            verifies(&bundle, cert, SERVICE_DNS).expect("the serving certificate verifies");
        }
    }
}

#[test]
fn destination_rbac_is_least_privilege() {
    let text = std::fs::read_to_string(repo("deploy/destination/rbac.yaml")).unwrap();
    let docs = rancher_remap::manifest::parse_documents(&text).unwrap();
    let role: Role = docs
        .iter()
        .find(|d| d["kind"] == "Role")
        .map(typed)
        .expect("a Role");
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 2);
    let cm = &rules[0];
    assert_eq!(cm.api_groups.as_deref(), Some(&[String::new()][..]));
    assert_eq!(
        cm.resources.as_deref(),
        Some(&["configmaps".to_string()][..])
    );
    assert_eq!(
        cm.resource_names.as_deref(),
        Some(&[DEFAULT_CONFIGMAP_NAME.to_string()][..])
    );
    assert_eq!(cm.verbs, ["get", "list", "watch"]);
    let ev = &rules[1];
    assert_eq!(
        ev.api_groups.as_deref(),
        Some(&["events.k8s.io".to_string()][..])
    );
    assert_eq!(ev.resources.as_deref(), Some(&["events".to_string()][..]));
    assert_eq!(ev.verbs, ["create"]);
    let binding: RoleBinding = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding")
        .map(typed)
        .expect("a RoleBinding");
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
}
