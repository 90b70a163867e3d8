//! The install, as an operator would apply it: both kustomize overlays (cert-manager and
//! self-signed) and the Helm chart in every role × certificate mode, rendered with the pinned
//! kubectl and helm (`make tools`), every document read back through its Kubernetes type, the
//! rules of a safe webhook install checked, and every matchCondition evaluated with a CEL
//! interpreter against a table of admission requests.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhook,
    ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use rancher_remap::mapping::objects::{
    DEFAULT_CONFIGMAP_NAME, MAPPINGS_LABEL, MIGRATION_USERS_ANNOTATION,
};
use rancher_remap::rewrite::MIGRATED_ANNOTATION;

use crate::common::{bin, path_with_tools, repo, stdout, tool, verifies};

const NAMESPACE: &str = "rancher-remap";
const SERVICE_DNS: &str = "rancher-remap.rancher-remap.svc";
const CHART: &str = "charts/rancher-remap";
/// The identity Stork's controller runs as in a default install.
const STORK_SA: &str = "system:serviceaccount:kube-system:stork-account";
/// The image the chart is rendered with, unless a test says otherwise.
const IMAGE: &str = "registry.example.com/platform/rancher-remap";
/// The Rancher ID the chart is rendered with (`clusterId`), unless a test says otherwise.
const THIS_CLUSTER: &str = "c-m-dst01";

/// Runs `cmd`, which must succeed; its stdout.
fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// `kubectl kustomize DIR`.
pub(crate) fn kustomize(dir: &Path) -> Vec<Value> {
    let mut cmd = tool("kubectl");
    cmd.arg("kustomize").arg(dir);
    rancher_remap::manifest::parse_documents(&run_ok(cmd)).unwrap()
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
/// cert-manager's and the Prometheus Operator's (checked separately).
fn check_types(install: &Install) {
    check_types_in(install, NAMESPACE)
}

/// As [`check_types`], for an install in namespace `ns`.
fn check_types_in(install: &Install, ns: &str) {
    for d in &install.docs {
        match d["kind"].as_str().unwrap() {
            "Namespace" => drop(typed::<Namespace>(d)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(d)),
            "Role" => drop(typed::<Role>(d)),
            "RoleBinding" => drop(typed::<RoleBinding>(d)),
            "ClusterRole" => drop(typed::<ClusterRole>(d)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(d)),
            "Service" => drop(typed::<Service>(d)),
            "Secret" => drop(secret(d)),
            "Deployment" => drop(typed::<Deployment>(d)),
            "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(d)),
            "MutatingWebhookConfiguration" => drop(typed::<MutatingWebhookConfiguration>(d)),
            "ValidatingWebhookConfiguration" => drop(typed::<ValidatingWebhookConfiguration>(d)),
            "ConfigMap" => drop(typed::<ConfigMap>(d)),
            "NetworkPolicy" => drop(typed::<NetworkPolicy>(d)),
            "Issuer" | "Certificate" => assert_eq!(d["apiVersion"], "cert-manager.io/v1"),
            "ServiceMonitor" | "PrometheusRule" => {
                assert_eq!(d["apiVersion"], "monitoring.coreos.com/v1")
            }
            other => panic!("unexpected kind {other} in the install"),
        }
        let cluster_scoped = [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
        ];
        if !cluster_scoped.contains(&d["kind"].as_str().unwrap()) {
            assert_eq!(d["metadata"]["namespace"], ns, "{}", d["kind"]);
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

/// What every webhook of an install must be; returns its Service path.
fn check_hook(h: &ValidatingWebhook, webhook_port: i32) -> String {
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
    assert_eq!(svc.port, Some(webhook_port), "{}", h.name);
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
    svc.path.clone().unwrap_or_default()
}

/// The mutating webhooks: `/mutate`, every kind the engine rewrites, and the request filter.
fn check_mutating_hooks(install: &Install, mutating: &[MutatingWebhookConfiguration]) {
    for c in mutating {
        for w in c.webhooks.iter().flatten() {
            assert_eq!(
                w.client_config.service.as_ref().unwrap().path.as_deref(),
                Some("/mutate")
            );
            assert!(w.reinvocation_policy.is_some(), "reinvocationPolicy chosen");
            let rules = w.rules.as_deref().unwrap_or_default();
            // Every kind the engine rewrites (docs/behaviour.md), created and updated.
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
            // The request filter must send exactly what the server's scope rewrites: with
            // --scope all everything (no filter), by default what check_match_conditions checks.
            let d = install.deployment();
            let conditions = w.match_conditions.as_deref().unwrap_or_default();
            if env(container(&d), "RANCHER_REMAP_SCOPE") == Some("all") {
                assert!(conditions.is_empty(), "--scope all, filtered");
            } else {
                let expr: String = conditions.iter().map(|c| c.expression.as_str()).collect();
                assert!(
                    expr.contains(MIGRATED_ANNOTATION) && expr.contains("'Namespace'"),
                    "{expr}"
                );
            }
        }
    }
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
        let path = check_hook(&h, webhook_port.port);
        paths.insert(h.name.clone(), path);
    }
    check_mutating_hooks(install, &mutating);
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

/// Where the mounted serving Secret comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SecretFrom {
    /// A cert-manager Certificate in the install.
    CertManager,
    /// The server's own Secret, made at run time (nothing mounted).
    Server,
    /// A Secret rendered into the install (scripts/render-self-signed).
    Rendered,
    /// Neither: the operator's own Secret (the chart's tls.existingSecret).
    Operator,
}

/// Items 3 and 4: the workload and its privileges.
/// SPEC §17: a rollout never leaves the webhook short (a new replica is ready before an old one
/// stops), and the grace period covers the shutdown delay and the drain, with no preStop hook
/// delaying SIGTERM (the server announces its shutdown only once it has the signal).
fn check_rollout(d: &Deployment) {
    let spec = d.spec.as_ref().unwrap();
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .expect("a RollingUpdate strategy");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    let c = container(d);
    assert!(
        c.lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .is_none(),
        "a preStop hook holds SIGTERM back while connections stay open unannounced"
    );
    let delay: i64 = env(c, "RANCHER_REMAP_SHUTDOWN_DELAY")
        .expect("RANCHER_REMAP_SHUTDOWN_DELAY")
        .parse()
        .unwrap();
    assert!(delay >= 5, "a shutdown delay of {delay} s");
    let grace = spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .termination_grace_period_seconds
        .unwrap();
    // The drain after the delay, longer than kube-apiserver's 90 s idle timeout, and time to
    // spare.
    let drain: i64 = env(c, "RANCHER_REMAP_DRAIN_TIMEOUT")
        .expect("RANCHER_REMAP_DRAIN_TIMEOUT")
        .parse()
        .unwrap();
    assert!(drain > 90, "a drain of {drain} s");
    assert!(
        grace >= delay + drain + 5,
        "grace {grace} s for delay {delay} s and drain {drain} s"
    );
}

fn check_workload(install: &Install, from: SecretFrom) {
    let d = install.deployment();
    check_rollout(&d);
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
    assert!(spec
        .selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| pod_labels.get(k) == Some(v)));
    check_selection(install, pod, &pod_labels);
    let c = container(&d);
    check_ports_and_probes(c);
    check_pod_security(install, pod, c);
    check_settings_are_flags(c);
    if from == SecretFrom::Server {
        check_server_made_rbac(install);
        return;
    }
    check_secret_source(install, pod, from);
    check_least_privilege(install);
}

/// The PodDisruptionBudget, the spread and the Service select the Deployment's pods.
fn check_selection(install: &Install, pod: &PodSpec, pod_labels: &BTreeMap<String, String>) {
    let selects = |sel: &LabelSelector| {
        sel.match_labels
            .iter()
            .flatten()
            .all(|(k, v)| pod_labels.get(k) == Some(v))
    };
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
}

/// The ports the server listens on are the ones the Service and the probes use.
fn check_ports_and_probes(c: &Container) {
    let port = |name: &str| {
        c.ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("container port {name}"))
            .container_port
    };
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
}

/// Resources and the restricted pod security standard.
fn check_pod_security(install: &Install, pod: &PodSpec, c: &Container) {
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
    // The kustomize install makes its namespace; a Helm release goes into one the operator
    // labels (the guide says how).
    for ns in install.all("Namespace") {
        let ns: Namespace = typed(ns);
        assert_eq!(
            ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
    }
}

fn check_settings_are_flags(c: &Container) {
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
}

/// The serving Secret is the one mounted, made by whom `from` says.
fn check_secret_source(install: &Install, pod: &PodSpec, from: SecretFrom) {
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
    let expected = match from {
        SecretFrom::CertManager => (true, false),
        SecretFrom::Rendered => (false, true),
        SecretFrom::Server | SecretFrom::Operator => (false, false),
    };
    assert_eq!(
        (made_by_cert_manager, rendered),
        expected,
        "{mounted} should come from {from:?}"
    );
}

/// Least privilege: no cluster-wide grants, no Secrets, no wildcards.
fn check_least_privilege(install: &Install) {
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

/// The webhook configurations of an install, as `serve --webhook-configuration` names them.
fn webhook_configuration_refs(install: &Install) -> Vec<String> {
    let mut refs = Vec::new();
    for (kind, prefix) in [
        ("MutatingWebhookConfiguration", "mutating"),
        ("ValidatingWebhookConfiguration", "validating"),
    ] {
        for c in install.all(kind) {
            refs.push(format!(
                "{prefix}/{}",
                c["metadata"]["name"].as_str().unwrap()
            ));
        }
    }
    refs
}

/// Server-made certificates: no Secret and no caBundle rendered, the server told which Secret
/// to keep and exactly the install's webhook configurations.
fn check_server_made(install: &Install) {
    assert!(install.all("Secret").is_empty(), "no Secret is rendered");
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for c in install.all(kind) {
            for w in c["webhooks"].as_array().unwrap() {
                assert!(
                    w["clientConfig"].get("caBundle").is_none(),
                    "the server fills the caBundle"
                );
            }
        }
    }
    let d = install.deployment();
    let c = container(&d);
    assert_eq!(
        env(c, "RANCHER_REMAP_CERT_SECRET"),
        Some(format!("{NAMESPACE}/rancher-remap-certs").as_str())
    );
    assert_eq!(env(c, "RANCHER_REMAP_SERVICE"), Some("rancher-remap"));
    let mut told: Vec<String> = env(c, "RANCHER_REMAP_WEBHOOK_CONFIGURATIONS")
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut rendered = webhook_configuration_refs(install);
    told.sort();
    rendered.sort();
    assert_eq!(told, rendered);
    assert!(
        env(c, "RANCHER_REMAP_TLS_CERT").is_none(),
        "nothing mounted to read"
    );
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert!(pod.volumes.unwrap_or_default().is_empty());
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "the server talks to the API"
    );
}

/// The privileges server-made certificates add: its own Secret by name (and create, which
/// Kubernetes cannot narrow by name), and get/patch on this install's webhook configurations by
/// name. Nothing else touches Secrets or is cluster-wide.
fn check_server_made_rbac(install: &Install) {
    let rule = |verbs: &[&str], resource: &str, group: &str, names: &[String]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: (!names.is_empty()).then(|| names.to_vec()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        non_resource_urls: None,
    };
    let certs: Role = typed(
        install
            .all("Role")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "rancher-remap-certs")
            .expect("the certificate Role"),
    );
    assert_eq!(
        certs.rules.unwrap(),
        [
            rule(
                &["get", "list", "watch", "patch"],
                "secrets",
                "",
                &["rancher-remap-certs".into()]
            ),
            rule(&["create"], "secrets", "", &[]),
        ]
    );
    let cluster_role: ClusterRole = install.one("ClusterRole");
    let mut granted: Vec<String> = Vec::new();
    for r in cluster_role.rules.unwrap() {
        assert_eq!(r.verbs, ["get", "patch"]);
        assert_eq!(
            r.api_groups.as_deref(),
            Some(&["admissionregistration.k8s.io".to_string()][..])
        );
        let kind = match r.resources.as_deref().unwrap() {
            [k] if k == "mutatingwebhookconfigurations" => "mutating",
            [k] if k == "validatingwebhookconfigurations" => "validating",
            other => panic!("{other:?}"),
        };
        granted.extend(
            r.resource_names
                .unwrap()
                .iter()
                .map(|n| format!("{kind}/{n}")),
        );
    }
    let mut rendered = webhook_configuration_refs(install);
    granted.sort();
    rendered.sort();
    assert_eq!(
        granted, rendered,
        "get/patch on exactly the install's webhook configurations"
    );
    for r in install.all("Role") {
        if r["metadata"]["name"] == "rancher-remap-certs" {
            continue;
        }
        let role: Role = typed(r);
        for rule in role.rules.unwrap_or_default() {
            for w in rule.verbs.iter().chain(rule.resources.iter().flatten()) {
                assert!(w != "*" && w != "secrets", "{w} in a Role");
            }
        }
    }
}

/// cert-manager's objects: the serving Certificate names the Service, its Issuer chain is in
/// the install (or it names the issuer the operator gave), and every webhook configuration asks
/// cainjector for its CA.
fn check_cert_manager(install: &Install, given_issuer: Option<(&str, &str)>) {
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
    if let Some((name, kind)) = given_issuer {
        assert_eq!(install.all("Certificate").len(), 1, "only the serving one");
        assert!(install.all("Issuer").is_empty());
        assert_eq!(tls["spec"]["issuerRef"]["name"], name);
        assert_eq!(tls["spec"]["issuerRef"]["kind"], kind);
    } else {
        let issuers: HashSet<&str> = install
            .all("Issuer")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        for c in install.all("Certificate") {
            assert!(issuers.contains(c["spec"]["issuerRef"]["name"].as_str().unwrap()));
        }
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

/// Every webhook's caBundle (base64 in the manifest), decoded.
fn ca_bundles(install: &Install) -> Vec<Vec<u8>> {
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
    bundles
}

/// The rendered serving Secret's certificate verifies against every webhook's caBundle, for
/// the Service's DNS name.
fn check_rendered_serving_secret(install: &Install) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let found = install
        .all("Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "rancher-remap-tls")
        .expect("the serving Secret");
    let secret = secret(found);
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    assert!(
        !data.contains_key("ca.key"),
        "the CA key is not in the serving Secret"
    );
    for bundle in ca_bundles(install) {
        verifies(&bundle, &data["tls.crt"].0, SERVICE_DNS)
            .expect("the serving certificate verifies");
    }
}

// ---- The matchConditions, evaluated ----

/// An AdmissionRequest as kube-apiserver builds it for a CREATE of `object` by `user`.
fn admission_request(kind: &str, user: &str, object: Value) -> Value {
    let (group, version, resource) = match kind {
        "Namespace" => ("", "v1", "namespaces"),
        "Deployment" => ("apps", "v1", "deployments"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "ClusterPair" => ("stork.libopenstorage.org", "v1alpha1", "clusterpairs"),
        other => panic!("{other}"),
    };
    json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "name": object["metadata"]["name"],
        "operation": "CREATE",
        "userInfo": {"username": user, "groups": ["system:authenticated"]},
        "object": object,
        "oldObject": null,
        "dryRun": false,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    })
}

fn object(kind: &str, name: &str, metadata: Value) -> Value {
    let mut meta = json!({"name": name});
    meta.as_object_mut()
        .unwrap()
        .extend(metadata.as_object().unwrap().clone());
    json!({"apiVersion": "v1", "kind": kind, "metadata": meta})
}

/// One request of the table, and who should see it.
struct Case {
    what: &'static str,
    request: Value,
}

/// Namespaces by a migration user and by others, migrated objects by anyone, plain objects,
/// objects without annotations or labels, ClusterPairs by people and by Stork.
fn cases() -> Vec<Case> {
    let project = json!({"labels": {"field.cattle.io/projectId": "p-src1"},
        "annotations": {"field.cattle.io/projectId": "c-src:p-src1"}});
    let migrated = json!({"annotations": {MIGRATED_ANNOTATION: "true",
        "field.cattle.io/projectId": "c-src:p-src1"}});
    // A custom resource named Namespace in another group: not the core Namespace.
    let mut custom = case(
        "a custom Namespace (example.com) from a source cluster, by u-stork",
        "Namespace",
        "u-stork",
        project.clone(),
    );
    custom.request["kind"]["group"] = json!("example.com");
    custom.request["resource"]["group"] = json!("example.com");
    custom.request["object"]["apiVersion"] = json!("example.com/v1");
    let mut cases = vec![custom];
    cases.extend(vec![
        case(
            "namespace from a source cluster by a person",
            "Namespace",
            "u-alice",
            annotated(KEY, "c-src:p-src1"),
        ),
        case(
            "namespace from a source cluster, Stork's spelling",
            "Namespace",
            "u-alice",
            annotated("field.cattle.io/projectID", "c-src:p-src1"),
        ),
        case(
            "namespace of this cluster by a person",
            "Namespace",
            "u-alice",
            annotated(KEY, &format!("{THIS_CLUSTER}:p-dst1")),
        ),
        case(
            "namespace of this cluster by Stork",
            "Namespace",
            STORK_SA,
            annotated(KEY, &format!("{THIS_CLUSTER}:p-dst1")),
        ),
        case(
            "namespace with a project-form annotation",
            "Namespace",
            "u-alice",
            annotated(KEY, "p-src1"),
        ),
        case(
            "namespace with the label alone, by a person",
            "Namespace",
            "u-alice",
            json!({"labels": {KEY: "p-src1"}, "annotations": {"other": "x"}}),
        ),
    ]);
    cases.extend(more_cases(&project, &migrated));
    cases.extend(configuration_cases());
    cases
}

/// The rest of [`cases`]: objects of other kinds, and Namespaces by other writers.
fn more_cases(project: &Value, migrated: &Value) -> Vec<Case> {
    vec![
        case(
            "deployment annotated from a source cluster",
            "Deployment",
            "u-alice",
            annotated(KEY, "c-src:p-src1"),
        ),
        case("namespace by Stork", "Namespace", STORK_SA, project.clone()),
        case(
            "namespace by u-stork",
            "Namespace",
            "u-stork",
            project.clone(),
        ),
        case(
            "namespace by a person",
            "Namespace",
            "u-alice",
            project.clone(),
        ),
        case(
            "namespace by Rancher",
            "Namespace",
            "system:serviceaccount:cattle-system:rancher",
            project.clone(),
        ),
        case("bare namespace by Stork", "Namespace", STORK_SA, json!({})),
        case(
            "bare namespace by a person",
            "Namespace",
            "u-alice",
            json!({}),
        ),
        case(
            "namespace with labels only",
            "Namespace",
            "u-alice",
            json!({"labels": {"a": "b"}}),
        ),
        case(
            "migrated namespace by a person",
            "Namespace",
            "u-alice",
            migrated.clone(),
        ),
        case(
            "migrated deployment by a person",
            "Deployment",
            "u-alice",
            migrated.clone(),
        ),
        case(
            "migrated deployment by Stork",
            "Deployment",
            STORK_SA,
            migrated.clone(),
        ),
        case(
            "deployment marked not migrated",
            "Deployment",
            STORK_SA,
            json!({"annotations": {MIGRATED_ANNOTATION: "false"}}),
        ),
        case("plain deployment", "Deployment", "u-alice", project.clone()),
        case(
            "plain deployment by Stork",
            "Deployment",
            STORK_SA,
            project.clone(),
        ),
        case("bare deployment", "Deployment", "u-alice", json!({})),
    ]
}

/// The mapping ConfigMap and ClusterPairs, by people and by Stork.
fn configuration_cases() -> Vec<Case> {
    vec![
        case(
            "mapping configmap",
            "ConfigMap",
            "u-alice",
            json!({"labels": {MAPPINGS_LABEL: "true"}}),
        ),
        case(
            "clusterpair by a person",
            "ClusterPair",
            "u-alice",
            json!({}),
        ),
        case("clusterpair by Stork", "ClusterPair", STORK_SA, json!({})),
        case(
            "clusterpair by another stork-account",
            "ClusterPair",
            "system:serviceaccount:portworx:stork-account",
            json!({}),
        ),
        case(
            "clusterpair by a service account",
            "ClusterPair",
            "system:serviceaccount:kube-system:other",
            json!({}),
        ),
    ]
}

/// A request of `kind` by `user`, its object's metadata `metadata`.
fn case(what: &'static str, kind: &str, user: &str, metadata: Value) -> Case {
    Case {
        what,
        request: admission_request(kind, user, object(kind, "x", metadata)),
    }
}

/// Metadata of one annotation.
fn annotated(key: &str, value: &str) -> Value {
    json!({"annotations": {key: value}})
}

const KEY: &str = "field.cattle.io/projectId";

/// Whether a webhook should be called for `request`, by what it is for: `users` and
/// `cluster` are what the install was configured with ("": no cluster ID).
fn should_send(hook: &str, request: &Value, users: &[&str], cluster: &str) -> bool {
    let object = &request["object"];
    let user = request["userInfo"]["username"].as_str().unwrap();
    let annotations = &object["metadata"]["annotations"];
    // A Namespace annotated with another cluster's ID, under either spelling of the key.
    let foreign = !cluster.is_empty()
        && ["field.cattle.io/projectId", "field.cattle.io/projectID"]
            .iter()
            .filter_map(|k| annotations[*k].as_str())
            .any(|v| v.split_once(':').is_some_and(|(c, _)| c != cluster));
    match hook {
        "rewrite.rancher-remap.io" => {
            annotations[MIGRATED_ANNOTATION] == "true"
                || (request["kind"]["kind"] == "Namespace"
                    && request["kind"]["group"] == ""
                    && (users.contains(&user) || foreign))
        }
        "clusterpairs.rancher-remap.io" => {
            !(user.starts_with("system:serviceaccount:") && user.ends_with(":stork-account"))
        }
        "mappings.rancher-remap.io" => true,
        other => panic!("no rule for webhook {other}"),
    }
}

/// The CEL environment of admission matchConditions: the standard library and the strings
/// extension (split, trim, ...), as kube-apiserver has them.
fn cel_env() -> Arc<cel::Env> {
    let mut env = cel::Env::stdlib();
    env.add_extension(cel::extensions::strings).unwrap();
    Arc::new(env)
}

/// Evaluates one expression with `object`, `oldObject` and `request` bound as kube-apiserver
/// binds them.
fn eval_condition(env: &Arc<cel::Env>, expr: &str, request: &Value) -> Result<bool, String> {
    let program = env.compile(expr).map_err(|e| format!("compile: {e}"))?;
    let mut ctx = cel::Context::with_env(env.clone());
    let value = |v: &Value| cel::to_value(v).unwrap();
    ctx.add_variable_from_value("object", value(&request["object"]));
    ctx.add_variable_from_value("oldObject", value(&request["oldObject"]));
    ctx.add_variable_from_value("request", value(request));
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("not a bool: {other:?}")),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// Every matchCondition of every webhook, evaluated on every request of the table: none may
/// error (under failurePolicy Fail an error refuses the write), and a webhook is called exactly
/// when what it is for says so. `users` and `cluster`: the migration users and the cluster ID
/// the install was configured with ("": none).
fn check_match_conditions(install: &Install, users: &[&str], cluster: &str) {
    let evaluator = cel_env();
    let cases = cases();
    let mut hooks = 0;
    for h in all_hooks(install) {
        hooks += 1;
        let conditions = h.match_conditions.clone().unwrap_or_default();
        for case in &cases {
            let mut sent = true;
            for c in &conditions {
                match eval_condition(&evaluator, &c.expression, &case.request) {
                    Ok(b) => sent &= b,
                    Err(e) => panic!(
                        "{}: matchCondition {} errors on {}: {e}\n{}",
                        h.name, c.name, case.what, c.expression
                    ),
                }
            }
            assert_eq!(
                sent,
                should_send(&h.name, &case.request, users, cluster),
                "{}: {} (migration users {users:?}, cluster {cluster:?})",
                h.name,
                case.what
            );
        }
    }
    assert!(hooks > 0);

    // The server gets the same users as the API server's filter.
    if !install.all("MutatingWebhookConfiguration").is_empty() {
        let d = install.deployment();
        let configured: Vec<&str> = env(container(&d), "RANCHER_REMAP_MIGRATION_USER")
            .expect("RANCHER_REMAP_MIGRATION_USER on the destination")
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        assert_eq!(configured, users);
        assert_eq!(
            env(container(&d), "RANCHER_REMAP_CLUSTER_ID"),
            Some(cluster),
            "the server gets the cluster ID the filter has"
        );
    }
}

#[test]
fn the_cel_evaluator_errors_on_a_missing_key_as_kubernetes_does() {
    // Without this, a test of has() guards would pass whether they are there or not.
    let env = cel_env();
    let bare = admission_request(
        "Deployment",
        "u-alice",
        object("Deployment", "x", json!({})),
    );
    let unguarded = format!("object.metadata.annotations['{MIGRATED_ANNOTATION}'] == 'true'");
    assert!(eval_condition(&env, &unguarded, &bare).is_err());
    let guarded = format!("has(object.metadata.annotations) && {unguarded}");
    assert_eq!(eval_condition(&env, &guarded, &bare), Ok(false));
    assert_eq!(
        eval_condition(&env, "'a, b'.split(',').exists(u, u.trim() == 'b')", &bare),
        Ok(true)
    );
    assert_eq!(
        eval_condition(&env, "request.userInfo.username in ['u-alice']", &bare),
        Ok(true)
    );
}

// ---- kustomize ----

fn rendered(overlay: &str) -> Install {
    Install {
        docs: kustomize(&repo("deploy").join(overlay)),
    }
}

#[test]
fn destination_overlay_is_a_complete_safe_install() {
    let install = rendered("destination");
    check_types(&install);
    let paths = check_webhooks(&install);
    assert_eq!(paths.len(), 3, "{paths:?}");
    let _: Namespace = install.one("Namespace");
    check_workload(&install, SecretFrom::CertManager);
    check_cert_manager(&install, None);
    // As shipped, no cluster ID and no migration user: no Namespace write reaches the webhook.
    check_match_conditions(&install, &[], "");
    assert!(
        install.all("ConfigMap").is_empty(),
        "migration-users.yaml is kustomize's input only"
    );
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

/// Copies a folder tree (the deploy/ overlays, to edit one file of a copy).
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Fills in the kustomize install's two settings in a copy of deploy/, as the files say to.
fn kustomize_with(cluster: &str, users: &str) -> Install {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo("deploy"), dir.path());
    for (file, shipped, set) in [
        (
            "migration-users.yaml",
            "  users: \"\"\n",
            format!("  users: \"{users}\"\n"),
        ),
        (
            "cluster-id.yaml",
            "  clusterId: \"\"\n",
            format!("  clusterId: \"{cluster}\"\n"),
        ),
    ] {
        let file = dir.path().join("destination").join(file);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(shipped), "{text}");
        std::fs::write(&file, text.replace(shipped, &set)).unwrap();
    }
    Install {
        docs: kustomize(&dir.path().join("destination")),
    }
}

/// The documented way to configure the kustomize install: one line of
/// deploy/destination/cluster-id.yaml and one of migration-users.yaml reach both the server
/// and the webhook's filter.
#[test]
fn cluster_id_and_migration_users_set_in_one_file_each_reach_the_server_and_the_filter() {
    let install = kustomize_with(THIS_CLUSTER, &format!("{STORK_SA}, u-stork"));
    check_types(&install);
    check_webhooks(&install);
    check_match_conditions(&install, &[STORK_SA, "u-stork"], THIS_CLUSTER);
    // The cluster ID alone: Namespaces are recognised without naming anyone.
    let install = kustomize_with(THIS_CLUSTER, "");
    check_match_conditions(&install, &[], THIS_CLUSTER);
}

/// The kustomize install configured from an overlay of the user's own, as
/// docs/operators-guide.md shows: a patch on the cluster-ID ConfigMap, then the shipped
/// transformer run again after it. The ID reaches the server and the webhook's filter.
#[test]
fn an_overlay_of_your_own_sets_the_cluster_id() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo("deploy"), &dir.path().join("deploy"));
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(
        mine.join("kustomization.yaml"),
        format!(
            "resources:\n  - ../deploy/destination\npatches:\n  - target: {{kind: ConfigMap, name: rancher-remap-cluster-id}}\n    patch: |-\n      - op: replace\n        path: /data/clusterId\n        value: {THIS_CLUSTER}\ntransformers:\n  - ../deploy/transformers/cluster-id\n"
        ),
    )
    .unwrap();
    let install = Install {
        docs: kustomize(&mine),
    };
    check_types(&install);
    check_webhooks(&install);
    check_match_conditions(&install, &[], THIS_CLUSTER);
    assert_eq!(
        env(container(&install.deployment()), "RANCHER_REMAP_CLUSTER_ID"),
        Some(THIS_CLUSTER)
    );
}

/// The mutating webhook's matchConditions are written once (the chart's
/// files/mutate-match-conditions.yaml); the kustomize install carries a copy that must not
/// drift, and both installs render the same conditions for the same settings.
#[test]
fn the_match_conditions_have_one_source_and_both_installs_render_them_alike() {
    let source = rancher_remap::manifest::parse_documents(
        &std::fs::read_to_string(repo(CHART).join("files/mutate-match-conditions.yaml")).unwrap(),
    )
    .unwrap();
    let kustomize_file = rancher_remap::manifest::parse_documents(
        &std::fs::read_to_string(repo("deploy/destination/mutating-webhook.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        kustomize_file[0]["webhooks"][0]["matchConditions"], source[0],
        "deploy/destination/mutating-webhook.yaml drifted from the chart's \
         files/mutate-match-conditions.yaml: run `make match-conditions`"
    );
    let conditions = |install: &Install| {
        let m: MutatingWebhookConfiguration = install.one("MutatingWebhookConfiguration");
        serde_json::to_value(&m.webhooks.unwrap()[0].match_conditions).unwrap()
    };
    for (cluster, users) in [(THIS_CLUSTER, vec![STORK_SA, "u-stork"]), ("local", vec![])] {
        let (id, list) = (
            format!("clusterId={cluster}"),
            format!("migrationUsers={{{}}}", users.join(",")),
        );
        let mut args = vec!["--set", &id];
        if !users.is_empty() {
            args.extend(["--set", &list]);
        }
        let chart = Install {
            docs: helm_template("destination", Certs::CertManager, &args).unwrap(),
        };
        let kustomized = kustomize_with(cluster, &users.join(","));
        assert_eq!(
            conditions(&chart),
            conditions(&kustomized),
            "{cluster} {users:?}"
        );
        check_match_conditions(&chart, &users, cluster);
    }
}

#[test]
fn source_overlay_validates_only() {
    let install = rendered("source");
    check_types(&install);
    let paths = check_webhooks(&install);
    assert!(paths.values().all(|p| p == "/validate"), "{paths:?}");
    let _: Namespace = install.one("Namespace");
    check_workload(&install, SecretFrom::CertManager);
    check_cert_manager(&install, None);
    check_match_conditions(&install, &[], "");
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
/// the Service's DNS name, and nothing of cert-manager is left. RENEW=1 replaces the serving
/// pair only, and keeps what the operator added to the kustomization.
#[test]
fn self_signed_render_fills_the_secret_and_every_ca_bundle() {
    let render = |overlay: &str, dir: &Path, renew: bool| {
        let out = Command::new("bash")
            .arg(repo("scripts/render-self-signed"))
            .arg(overlay)
            .arg(env!("CARGO_BIN_EXE_rancher-remap"))
            .env("PATH", path_with_tools())
            .env("OUT_DIR", dir)
            .env("RENEW", if renew { "1" } else { "" })
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (
            std::fs::read_to_string(dir.join("install.yaml")).unwrap(),
            stderr,
        )
    };
    for overlay in ["destination", "source"] {
        let dir = tempfile::tempdir().unwrap();
        let (text, warned) = render(overlay, dir.path(), false);
        // No cluster ID as shipped: said loudly on the destination.
        assert_eq!(
            warned.contains("WARNING: no cluster ID is set"),
            overlay == "destination",
            "{warned}"
        );
        // Rendering again keeps the certificates.
        assert_eq!(render(overlay, dir.path(), false).0, text);
        // The operator's own additions to the kustomization survive a renewal.
        let kustomization = dir.path().join("kustomization.yaml");
        let mut k = std::fs::read_to_string(&kustomization).unwrap();
        k.push_str("images:\n  - name: rancher-remap\n    newName: registry.example.com/platform/rancher-remap\n    newTag: \"1.2.3\"\n");
        std::fs::write(&kustomization, &k).unwrap();
        let (renewed, _) = render(overlay, dir.path(), true);
        assert_eq!(std::fs::read_to_string(&kustomization).unwrap(), k);
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
        let d = install.deployment();
        assert_eq!(
            container(&d).image.as_deref(),
            Some("registry.example.com/platform/rancher-remap:1.2.3"),
            "{overlay}: the operator's image"
        );
        check_types(&install);
        check_webhooks(&install);
        check_workload(&install, SecretFrom::Rendered);
        check_match_conditions(&install, &[], "");
        assert!(install.all("Certificate").is_empty() && install.all("Issuer").is_empty());
        assert!(
            !text.contains("cert-manager.io"),
            "{overlay}: cert-manager left over"
        );
        assert_eq!(install.all("Secret").len(), 1);
        check_rendered_serving_secret(&install);
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
    check_role(&role, DEFAULT_CONFIGMAP_NAME);
    let binding: RoleBinding = docs
        .iter()
        .find(|d| d["kind"] == "RoleBinding")
        .map(typed)
        .expect("a RoleBinding");
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
}

/// The Role that reads the mapping ConfigMap.
fn mappings_role(install: &Install) -> Role {
    typed(
        install
            .all("Role")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "rancher-remap-mappings-reader")
            .expect("the mappings Role"),
    )
}

/// Read and watch the one mapping ConfigMap, create Events; nothing else.
fn check_role(role: &Role, configmap: &str) {
    let rules = role.rules.clone().unwrap();
    assert_eq!(rules.len(), 2);
    let cm = &rules[0];
    assert_eq!(cm.api_groups.as_deref(), Some(&[String::new()][..]));
    assert_eq!(
        cm.resources.as_deref(),
        Some(&["configmaps".to_string()][..])
    );
    assert_eq!(
        cm.resource_names.as_deref(),
        Some(&[configmap.to_string()][..])
    );
    assert_eq!(cm.verbs, ["get", "list", "watch"]);
    let ev = &rules[1];
    assert_eq!(
        ev.api_groups.as_deref(),
        Some(&["events.k8s.io".to_string()][..])
    );
    assert_eq!(ev.resources.as_deref(), Some(&["events".to_string()][..]));
    assert_eq!(ev.verbs, ["create"]);
}

// ---- The Helm chart ----

/// The server's environment as the chart renders it for the destination with `extra` values
/// (the variables with literal values; the pod's own fields, POD_NAME, left out).
pub(crate) fn chart_server_env(extra: &[&str]) -> Vec<(String, String)> {
    let install = Install {
        docs: helm_template("destination", Certs::ServerMade, extra).unwrap(),
    };
    let d = install.deployment();
    container(&d)
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

/// The chart's three ways to a serving certificate (cert-manager in two).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Certs {
    /// cert-manager, with the chart's own self-signed CA Issuer.
    CertManager,
    /// cert-manager, with an issuer the operator names.
    CertManagerIssuer,
    /// The server makes, renews and publishes its own (`serve --cert-secret`): nothing rendered.
    ServerMade,
    /// The operator's Secret and caBundle.
    ExistingSecret,
}

const ALL_CERTS: [Certs; 4] = [
    Certs::CertManager,
    Certs::CertManagerIssuer,
    Certs::ServerMade,
    Certs::ExistingSecret,
];

/// A CA the operator might have (base64 PEM, as tls.caBundle takes it).
/// (One per test run: the same values render the same install.)
fn operator_ca() -> String {
    static CA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let g = rancher_remap::cli::certs::generate("corp", "corp", 30).unwrap();
        base64::engine::general_purpose::STANDARD.encode(g.ca.cert)
    })
    .clone()
}

/// `helm template` of the chart as release rancher-remap in namespace rancher-remap.
pub(crate) fn helm_template(
    role: &str,
    certs: Certs,
    extra: &[&str],
) -> Result<Vec<Value>, String> {
    helm_template_at(&repo(CHART), role, certs, extra)
}

/// [`helm_template`] of the chart at `chart` (an edited copy).
pub(crate) fn helm_template_at(
    chart: &Path,
    role: &str,
    certs: Certs,
    extra: &[&str],
) -> Result<Vec<Value>, String> {
    render(chart, role, certs, extra, false)
}

/// The `helm test` hooks of the chart rendered as [`helm_template`] renders it.
pub(crate) fn helm_test_hooks(extra: &[&str]) -> Vec<Value> {
    render(&repo(CHART), "destination", Certs::ServerMade, extra, true)
        .unwrap()
        .into_iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .collect()
}

/// The install (`tests`: and the `helm test` hooks).
fn render(
    chart: &Path,
    role: &str,
    certs: Certs,
    extra: &[&str],
    tests: bool,
) -> Result<Vec<Value>, String> {
    let text = render_text(chart, role, certs, extra, tests)?;
    Ok(rancher_remap::manifest::parse_documents(&text).unwrap())
}

/// [`render`]'s text, as helm printed it.
fn render_text(
    chart: &Path,
    role: &str,
    certs: Certs,
    extra: &[&str],
    tests: bool,
) -> Result<String, String> {
    let mut cmd = tool("helm");
    cmd.args(["template", "rancher-remap"]).arg(chart).args([
        "--namespace",
        NAMESPACE,
        "--set",
        &format!("role={role}"),
    ]);
    let ca;
    match certs {
        Certs::CertManager => {
            cmd.args(["--set", "certManager.enabled=true"]);
        }
        Certs::CertManagerIssuer => {
            cmd.args([
                "--set",
                "certManager.enabled=true",
                "--set",
                "certManager.issuerRef.name=corp-ca",
                "--set",
                "certManager.issuerRef.kind=ClusterIssuer",
            ]);
        }
        Certs::ServerMade => {}
        Certs::ExistingSecret => {
            ca = operator_ca();
            cmd.args([
                "--set",
                "tls.existingSecret=corp-webhook-tls",
                "--set",
                &format!("tls.caBundle={ca}"),
            ]);
        }
    }
    if !tests {
        cmd.arg("--skip-tests");
    }
    // The two values every install must give (the schema refuses an install without them).
    if !extra.iter().any(|a| a.starts_with("clusterId=")) {
        cmd.args(["--set", &format!("clusterId={THIS_CLUSTER}")]);
    }
    if !extra.iter().any(|a| a.starts_with("image.repository=")) {
        cmd.args(["--set", &format!("image.repository={IMAGE}")]);
    }
    cmd.args(extra);
    let out = cmd.output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(stdout(&out))
}

/// Every optional object on, and two migration users.
const EVERYTHING: &[&str] = &[
    "--set",
    "migrationUsers={system:serviceaccount:kube-system:stork-account,u-stork}",
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.dashboard.enabled=true",
    "--set",
    "networkPolicy.enabled=true",
];

#[test]
fn chart_is_a_complete_safe_install_for_every_role_and_certificate_mode() {
    for role in ["destination", "source"] {
        for certs in ALL_CERTS {
            for (extra, users) in [(EVERYTHING, &[STORK_SA, "u-stork"][..]), (&[][..], &[][..])] {
                let what = format!("{role} {certs:?} {extra:?}");
                let install = Install {
                    docs: helm_template(role, certs, extra)
                        .unwrap_or_else(|e| panic!("{what}: {e}")),
                };
                check_types(&install);
                let paths = check_webhooks(&install);
                let (users, cluster) = match role {
                    "destination" => (users, THIS_CLUSTER),
                    _ => (&[][..], ""),
                };
                check_match_conditions(&install, users, cluster);
                let from = match certs {
                    Certs::CertManager | Certs::CertManagerIssuer => SecretFrom::CertManager,
                    Certs::ServerMade => SecretFrom::Server,
                    Certs::ExistingSecret => SecretFrom::Operator,
                };
                check_workload(&install, from);
                match certs {
                    Certs::CertManager => check_cert_manager(&install, None),
                    Certs::CertManagerIssuer => {
                        check_cert_manager(&install, Some(("corp-ca", "ClusterIssuer")))
                    }
                    Certs::ServerMade => check_server_made(&install),
                    Certs::ExistingSecret => {
                        let ca = base64::engine::general_purpose::STANDARD
                            .decode(operator_ca_of(&install))
                            .unwrap();
                        for b in ca_bundles(&install) {
                            assert_eq!(b, ca, "{what}: every caBundle is the operator's");
                        }
                    }
                }
                if certs != Certs::CertManager && certs != Certs::CertManagerIssuer {
                    assert!(
                        !serde_json::to_string(&install.docs)
                            .unwrap()
                            .contains("cert-manager.io"),
                        "{what}: cert-manager left over"
                    );
                }
                let d = install.deployment();
                let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
                if role == "destination" {
                    assert_eq!(paths.len(), 3, "{what}: {paths:?}");
                    assert_eq!(
                        env(container(&d), "RANCHER_REMAP_MAPPINGS_CONFIGMAP"),
                        Some(format!("{NAMESPACE}/{DEFAULT_CONFIGMAP_NAME}").as_str())
                    );
                    assert_eq!(pod.automount_service_account_token, Some(true));
                    check_role(&mappings_role(&install), DEFAULT_CONFIGMAP_NAME);
                } else {
                    assert!(
                        paths.values().all(|p| p == "/validate"),
                        "{what}: {paths:?}"
                    );
                    assert!(install.all("MutatingWebhookConfiguration").is_empty());
                    assert_eq!(
                        env(container(&d), "RANCHER_REMAP_VALIDATE_ONLY"),
                        Some("true")
                    );
                    // A validator reads nothing from the API, unless it keeps its own
                    // certificates.
                    let server_made = certs == Certs::ServerMade;
                    assert_eq!(install.all("Role").len(), usize::from(server_made));
                    assert_eq!(pod.automount_service_account_token, Some(server_made));
                }
                if !extra.is_empty() {
                    check_monitoring_objects(&install);
                }
            }
        }
    }
}

/// The caBundle the test gave (any webhook's; all are compared to it).
fn operator_ca_of(install: &Install) -> String {
    let mut found = HashSet::new();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for c in install.all(kind) {
            for w in c["webhooks"].as_array().unwrap() {
                found.insert(w["clientConfig"]["caBundle"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(found.len(), 1, "one caBundle");
    found.into_iter().next().unwrap()
}

/// ServiceMonitor, PrometheusRule, dashboard and NetworkPolicy point at what the install runs.
fn check_monitoring_objects(install: &Install) {
    let d = install.deployment();
    let pod_labels = d
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let selects = |sel: &Value| {
        sel["matchLabels"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| pod_labels.get(k).map(String::as_str) == v.as_str())
    };
    let sm = install.all("ServiceMonitor");
    assert_eq!(sm.len(), 1);
    assert_eq!(sm[0]["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(sm[0]["spec"]["endpoints"][0]["path"], "/metrics");
    let svc: Service = install.one("Service");
    let svc_labels = svc.metadata.labels.unwrap();
    assert!(sm[0]["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| svc_labels.get(k).map(String::as_str) == v.as_str()));

    let np: NetworkPolicy = install.one("NetworkPolicy");
    let np = np.spec.unwrap();
    assert!(selects(&serde_json::to_value(&np.pod_selector).unwrap()));
    let ports: Vec<IntOrString> = np
        .ingress
        .unwrap()
        .iter()
        .flat_map(|r| r.ports.clone().unwrap_or_default())
        .filter_map(|p| p.port)
        .collect();
    assert_eq!(
        ports,
        [
            IntOrString::String("webhook".into()),
            IntOrString::String("admin".into())
        ]
    );

    // The PrometheusRule is the plain rules file, rule for rule.
    let file =
        std::fs::read_to_string(repo(&format!("{CHART}/files/rancher-remap.rules.yaml"))).unwrap();
    let file = rancher_remap::manifest::parse_documents(&file).unwrap()[0].clone();
    let rule = install.all("PrometheusRule");
    assert_eq!(rule.len(), 1);
    assert_eq!(rule[0]["spec"]["groups"], file["groups"]);

    let dashboards = install.all("ConfigMap");
    let dash = dashboards
        .iter()
        .find(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the dashboard ConfigMap");
    let json_text = dash["data"]["rancher-remap.json"].as_str().unwrap();
    let file =
        std::fs::read_to_string(repo(&format!("{CHART}/files/rancher-remap-dashboard.json")))
            .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(json_text).unwrap(),
        serde_json::from_str::<Value>(&file).unwrap()
    );
}

#[test]
fn chart_values_are_closed_and_checked() {
    // A typo, a wrong role, a policy the server does not know: the install fails, naming it.
    for (args, says) in [
        (&["--set", "imag.tag=1.0"][..], "imag"),
        (&["--set", "image.tg=1.0"][..], "tg"),
        (&["--set", "role=both"][..], "role"),
        (&["--set", "unmapped=remove"][..], "unmapped"),
        (&["--set", "mode=dry-run"][..], "mode"),
        (
            &["--set", "webhook.failurePolicy=fail"][..],
            "failurePolicy",
        ),
        (
            &[
                "--set",
                "migrationUsers={a,b}",
                "--set",
                "migrationUsers[0]=",
            ][..],
            "migrationUsers",
        ),
        (&["--set", "tls.existingSecret=s"][..], "caBundle"),
        // This cluster's ID: required on the destination, a DNS-1123 label.
        (&["--set", "clusterId="][..], "clusterId"),
        (&["--set", "clusterId=C_M"][..], "clusterId"),
        (&["--set", "clusterId=c-m:p-x"][..], "clusterId"),
        // No image to pull: said at render, not as an ImagePullBackOff behind the webhook.
        (&["--set", "image.repository="][..], "repository"),
        // Mapping text the server would refuse, refused at render.
        (&["--set", "mappings.inline.a=p-a="][..], "inline"),
        (&["--set", "mappings.inline.a=p-a: p-b"][..], "inline"),
        (&["--set", "mappings.inline.a=P-A=p-b"][..], "inline"),
        (&["--set", "mappings.inline.a=a:b:c=d"][..], "inline"),
        (
            &["--set-string", "mappings.inline.a=p-a=p-b\\,"][..],
            "inline",
        ),
        // A PDB that would block every node drain.
        (
            &[
                "--set",
                "replicas=2",
                "--set",
                "podDisruptionBudget.minAvailable=2",
            ][..],
            "minAvailable",
        ),
        // A user is put between quotes in a CEL expression.
        (&["--set", "migrationUsers={it's}"][..], "migrationUsers"),
    ] {
        let err = helm_template("destination", Certs::ServerMade, args)
            .err()
            .unwrap_or_else(|| panic!("{args:?} was accepted"));
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// One replica gets no PodDisruptionBudget: minAvailable 1 of 1 would block every node drain.
#[test]
fn a_single_replica_install_never_blocks_a_node_drain() {
    let one = Install {
        docs: helm_template("destination", Certs::ServerMade, &["--set", "replicas=1"]).unwrap(),
    };
    check_types(&one);
    assert!(one.all("PodDisruptionBudget").is_empty());
    let three = Install {
        docs: helm_template(
            "destination",
            Certs::ServerMade,
            &[
                "--set",
                "replicas=3",
                "--set",
                "podDisruptionBudget.minAvailable=2",
            ],
        )
        .unwrap(),
    };
    let pdb: PodDisruptionBudget = three.one("PodDisruptionBudget");
    assert_eq!(pdb.spec.unwrap().min_available, Some(IntOrString::Int(2)));
}

#[test]
fn chart_inline_mappings_make_the_configmap_the_server_follows() {
    let docs = helm_template(
        "destination",
        Certs::ServerMade,
        &[
            "--set",
            "mappings.inline.stork\\.pair-a=p-src1=p-dst1\\,c-src:p-src1=c-dst:p-dst1",
            "--set",
            &format!("migrationUsers={{{STORK_SA}}}"),
        ],
    )
    .unwrap();
    let install = Install { docs };
    check_types(&install);
    let cm: ConfigMap = install.one("ConfigMap");
    assert_eq!(cm.metadata.name.as_deref(), Some(DEFAULT_CONFIGMAP_NAME));
    assert_eq!(cm.metadata.labels.as_ref().unwrap()[MAPPINGS_LABEL], "true");
    assert_eq!(
        cm.metadata.annotations.as_ref().unwrap()[MIGRATION_USERS_ANNOTATION],
        STORK_SA
    );
    assert_eq!(
        cm.data.as_ref().unwrap()["stork.pair-a"],
        "p-src1=p-dst1,c-src:p-src1=c-dst:p-dst1"
    );
    // The server's own checker accepts it as a mapping ConfigMap.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cm.json");
    std::fs::write(&path, serde_json::to_string(&cm).unwrap()).unwrap();
    let out = bin().arg("check").arg("-f").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// NOTES.txt as `helm install` prints it. (`helm template` leaves the notes out and `helm
/// install --dry-run` needs a cluster, so a copy of the chart renders them into a ConfigMap.)
fn chart_notes(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo(CHART), dir.path());
    std::fs::write(
        dir.path().join("templates/zz-notes.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include \"rancher-remap/templates/NOTES.txt\" . | toJson }}\n",
    )
    .unwrap();
    let mut cmd = tool("helm");
    cmd.args(["template", "rancher-remap"])
        .arg(dir.path())
        .args([
            "--namespace",
            NAMESPACE,
            "--show-only",
            "templates/zz-notes.yaml",
            "--set",
            &format!("image.repository={IMAGE}"),
        ])
        .args(args);
    let docs = rancher_remap::manifest::parse_documents(&run_ok(cmd)).unwrap();
    docs[0]["data"]["notes"].as_str().unwrap().to_string()
}

#[test]
fn chart_notes_name_this_cluster_and_how_namespaces_are_recognised() {
    let plain = chart_notes(&["--set", "role=destination", "--set", "clusterId=c-m-dst01"]);
    assert!(
        plain.contains("This cluster's Rancher ID: c-m-dst01.")
            && plain.contains("reaches the webhook, whoever writes it"),
        "{plain}"
    );
    assert!(!plain.contains("Namespace writes by"), "{plain}");
    let set = chart_notes(&[
        "--set",
        "role=destination",
        "--set",
        "clusterId=c-m-dst01",
        "--set",
        &format!("migrationUsers={{{STORK_SA},u-stork}}"),
    ]);
    assert!(
        set.contains(&format!(
            "Namespace writes by {STORK_SA}, u-stork reach the webhook too"
        )),
        "{set}"
    );
    // The destination is checked by doctor, in `helm test` or by hand.
    assert!(
        plain.contains("helm test rancher-remap -n rancher-remap")
            && plain.contains("rancher-remap doctor -n rancher-remap --name rancher-remap"),
        "{plain}"
    );
    // A source cluster rewrites nothing: no cluster ID to name, nothing for doctor.
    let source = chart_notes(&["--set", "role=source"]);
    assert!(!source.contains("Rancher ID"), "{source}");
    assert!(!source.contains("doctor"), "{source}");
    // Server-made certificates (the default): where they are, and that the Secret outlives
    // `helm uninstall`; with cert-manager, neither.
    for notes in [&plain, &source] {
        assert!(
            notes.contains("in the Secret\nrancher-remap/rancher-remap-certs")
                && notes.contains("kubectl -n rancher-remap delete secret rancher-remap-certs"),
            "{notes}"
        );
    }
    let cert_manager = chart_notes(&["--set", "role=source", "--set", "certManager.enabled=true"]);
    assert!(
        !cert_manager.contains("rancher-remap-certs"),
        "{cert_manager}"
    );
    // Every install says that `helm uninstall` alone leaves no webhook configuration (as
    // measured), and what stays behind: the mapping ConfigMap applied by hand, not one inline.
    for notes in [&plain, &set, &source] {
        assert!(
            notes.contains("nothing needs deleting by hand first")
                && !notes.contains("remove the webhook configurations FIRST"),
            "{notes}"
        );
    }
    assert!(
        plain.contains("kubectl -n rancher-remap delete configmap rancher-remap-mappings"),
        "{plain}"
    );
    assert!(!source.contains("delete configmap"), "{source}");
    assert!(
        cert_manager
            .contains("kubectl -n rancher-remap delete secret rancher-remap-tls rancher-remap-ca"),
        "{cert_manager}"
    );
}

/// The settings an operator changes reach the server and the webhook configurations.
#[test]
fn chart_settings_reach_the_server_and_the_webhooks() {
    let settings = [
        "scope=all",
        "unmapped=deny",
        "mode=warn",
        "webhook.failurePolicy=Ignore",
        "webhook.timeoutSeconds=3",
        "webhook.excludedNamespaces={cattle-system,longhorn-system}",
        "replicas=3",
        "image.repository=registry.example.com/rancher-remap",
        "image.pullSecrets={regcred}",
        "priorityClassName=system-cluster-critical",
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.runbookBaseUrl=https://git.example.com/rancher-remap/blob/main/",
    ];
    let args: Vec<&str> = settings.iter().flat_map(|s| ["--set", s]).collect();
    let install = Install {
        docs: helm_template("destination", Certs::ServerMade, &args).unwrap(),
    };
    check_types(&install);
    check_webhooks(&install);
    let d = install.deployment();
    let c = container(&d);
    assert_eq!(env(c, "RANCHER_REMAP_SCOPE"), Some("all"));
    assert_eq!(env(c, "RANCHER_REMAP_UNMAPPED"), Some("deny"));
    assert_eq!(env(c, "RANCHER_REMAP_MODE"), Some("warn"));
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.com/rancher-remap:0.1.0"),
        "the tag defaults to the appVersion"
    );
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    let mutating: MutatingWebhookConfiguration = install.one("MutatingWebhookConfiguration");
    let hook = &mutating.webhooks.unwrap()[0];
    // --scope all rewrites every object: the API server must send them all.
    assert!(hook.match_conditions.is_none());
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(hook.timeout_seconds, Some(3));
    // The runbook links point into the operator's browsable copy of the guide.
    let rule = install.all("PrometheusRule");
    let mut alerts = 0;
    for g in rule[0]["spec"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let url = r["annotations"]["runbook_url"].as_str().unwrap();
            let name = r["alert"].as_str().unwrap().to_lowercase();
            assert_eq!(
                url,
                format!("https://git.example.com/rancher-remap/blob/main/docs/operators-guide.md#{name}")
            );
            alerts += 1;
        }
    }
    assert!(alerts >= 8);
    for h in all_hooks(&install) {
        let excluded = excluded_namespaces(h.namespace_selector.as_ref());
        if h.name != "mappings.rancher-remap.io" {
            for ns in ["kube-system", NAMESPACE, "cattle-system", "longhorn-system"] {
                assert!(excluded.contains(ns), "{}: {ns}", h.name);
            }
        }
    }
}

/// The chart-made CA and serving pair survive upgrades: the template reads them back with
/// `lookup`, which `helm template` cannot do (no cluster). A copy of the chart takes the
/// looked-up Secrets from a values file instead, so the keep-or-make logic itself is what runs.
/// GitOps tools render with `helm template`, where `lookup` finds nothing: every install must
/// render the same bytes every time, or every sync changes it.
#[test]
fn helm_template_renders_the_same_bytes_twice_and_looks_nothing_up() {
    let random = [
        "lookup",
        "genCA",
        "genPrivateKey",
        "genSelfSignedCert",
        "genSignedCert",
        "randAlpha",
        "randAlphaNum",
        "randNumeric",
        "randAscii",
        "randBytes",
        "uuidv4",
        "now",
    ];
    for entry in walk(&repo(&format!("{CHART}/templates"))) {
        let text = std::fs::read_to_string(&entry).unwrap();
        // The words inside every {{ ... }} action.
        for action in text
            .split("{{")
            .skip(1)
            .filter_map(|a| a.split("}}").next())
        {
            for word in action.split(|c: char| !c.is_ascii_alphanumeric()) {
                assert!(
                    !random.contains(&word),
                    "{}: {word} in {{{{{action}}}}}",
                    entry.display()
                );
            }
        }
    }
    for role in ["destination", "source"] {
        for certs in ALL_CERTS {
            let once = render_text(&repo(CHART), role, certs, EVERYTHING, true).unwrap();
            let twice = render_text(&repo(CHART), role, certs, EVERYTHING, true).unwrap();
            assert!(once == twice, "{role} {certs:?}: two renders differ");
        }
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_helm_test_pod_runs_doctor_under_its_own_read_only_account() {
    let hooks = helm_test_hooks(&[]);
    let kinds: Vec<&str> = hooks.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Pod"
        ]
    );
    for d in &hooks {
        let annotations = &d["metadata"]["annotations"];
        assert_eq!(
            annotations["helm.sh/hook-delete-policy"],
            "before-hook-creation,hook-succeeded"
        );
        // The RBAC exists before the Pod starts.
        let weight = if d["kind"] == "Pod" {
            Value::Null
        } else {
            json!("-1")
        };
        assert_eq!(annotations["helm.sh/hook-weight"], weight, "{}", d["kind"]);
        match d["kind"].as_str().unwrap() {
            "ServiceAccount" => drop(typed::<ServiceAccount>(d)),
            "Role" => drop(typed::<Role>(d)),
            "RoleBinding" => drop(typed::<RoleBinding>(d)),
            "ClusterRole" => drop(typed::<k8s_openapi::api::rbac::v1::ClusterRole>(d)),
            "ClusterRoleBinding" => {
                drop(typed::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(d))
            }
            _ => {}
        }
        // Read-only: nothing but get, list, and the SubjectAccessReview question.
        for rule in d["rules"].as_array().into_iter().flatten() {
            for verb in rule["verbs"].as_array().unwrap() {
                let create_review =
                    verb == "create" && rule["resources"][0] == "subjectaccessreviews";
                assert!(verb == "get" || verb == "list" || create_review, "{rule}");
            }
        }
    }
    let pod: k8s_openapi::api::core::v1::Pod = typed(hooks.last().unwrap());
    let install = Install {
        docs: helm_template("destination", Certs::ServerMade, &[]).unwrap(),
    };
    let server = install.deployment();
    let spec = pod.spec.unwrap();
    let c = &spec.containers[0];
    assert_eq!(c.image, container(&server).image, "the image's binary");
    assert_eq!(
        c.args.clone().unwrap(),
        [
            "doctor",
            "--namespace",
            NAMESPACE,
            "--name",
            "rancher-remap"
        ]
    );
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("rancher-remap-doctor")
    );
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    // The server's ReplicaSet must never adopt it.
    let selector = server.spec.unwrap().selector.match_labels.unwrap();
    let labels = pod.metadata.labels.unwrap();
    assert!(selector.iter().any(|(k, v)| labels.get(k) != Some(v)));
    // The source role has no doctor test (doctor checks a destination).
    let source = render(&repo(CHART), "source", Certs::ServerMade, &[], true).unwrap();
    assert!(source
        .iter()
        .all(|d| d["metadata"]["annotations"]["helm.sh/hook"].is_null()));
}

/// The kustomize install's namespace is one line of each overlay's kustomization.yaml: changed
/// there, it reaches every field that names it — the objects, the webhooks' Service, the serving
/// certificate's DNS names, cert-manager's CA injection, the webhooks' own-namespace exclusion,
/// the mapping ConfigMap the server watches — in the cert-manager install and in the
/// self-signed one (`scripts/render-self-signed`).
#[test]
fn the_kustomize_namespace_is_set_in_one_line_and_reaches_every_field() {
    const NS: &str = "remap-prod";
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo("deploy"), &dir.path().join("deploy"));
    copy_tree(&repo("scripts"), &dir.path().join("scripts"));
    for overlay in ["destination", "source"] {
        let file = dir
            .path()
            .join("deploy")
            .join(overlay)
            .join("kustomization.yaml");
        let self_signed = set_namespace_and_render(dir.path(), overlay, &file, NS);
        for (how, install) in [
            (
                "cert-manager",
                Install {
                    docs: kustomize(&dir.path().join("deploy").join(overlay)),
                },
            ),
            (
                "self-signed",
                Install {
                    docs: rancher_remap::manifest::parse_documents(&self_signed).unwrap(),
                },
            ),
        ] {
            check_renamed_namespace(&install, overlay, how, NS);
        }
    }
}

/// Sets the namespace line of `overlay`'s kustomization.yaml (`file`, in a copy of the repo at
/// `root`) to `ns` and renders the self-signed install of it.
fn set_namespace_and_render(root: &Path, overlay: &str, file: &Path, ns: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(
        text.matches("\nnamespace: rancher-remap\n").count(),
        1,
        "{text}"
    );
    std::fs::write(
        file,
        text.replace(
            "\nnamespace: rancher-remap\n",
            &format!("\nnamespace: {ns}\n"),
        ),
    )
    .unwrap();

    let out = root.join("self-signed").join(overlay);
    let rendered = Command::new("bash")
        .arg(root.join("scripts/render-self-signed"))
        .arg(overlay)
        .arg(env!("CARGO_BIN_EXE_rancher-remap"))
        .env("PATH", path_with_tools())
        .env("OUT_DIR", &out)
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    std::fs::read_to_string(out.join("install.yaml")).unwrap()
}

/// Every field of an `overlay` install (made `how`) that names the namespace names `ns`.
fn check_renamed_namespace(install: &Install, overlay: &str, how: &str, ns: &str) {
    let what = format!("{overlay} ({how})");
    check_types_in(install, ns);
    let text = serde_json::to_string(&install.docs).unwrap();
    for old in [
        "\"rancher-remap/",
        ".rancher-remap.svc",
        "\"namespace\":\"rancher-remap\"",
    ] {
        assert!(!text.contains(old), "{what}: {old} left behind");
    }
    let _: Namespace = install.one("Namespace");
    assert_eq!(
        install.all("Namespace")[0]["metadata"]["name"],
        ns,
        "{what}"
    );
    for h in all_hooks(install) {
        let service = h.client_config.service.as_ref().unwrap();
        assert_eq!(service.namespace, ns, "{what}");
        if h.name != "mappings.rancher-remap.io" {
            let excluded = excluded_namespaces(h.namespace_selector.as_ref());
            assert!(
                excluded.contains(ns) && !excluded.contains("rancher-remap"),
                "{what}: {excluded:?}"
            );
        }
    }
    let serving = format!("rancher-remap.{ns}.svc");
    match how {
        "cert-manager" => {
            let cert = install
                .all("Certificate")
                .into_iter()
                .find(|c| c["metadata"]["name"] == "rancher-remap-tls")
                .unwrap();
            assert_eq!(cert["spec"]["dnsNames"][0], serving.as_str(), "{what}");
            assert!(
                text.contains(&format!(
                    "\"cert-manager.io/inject-ca-from\":\"{ns}/rancher-remap-tls\""
                )),
                "{what}"
            );
        }
        _ => {
            let secret = install
                .all("Secret")
                .into_iter()
                .find(|s| s["metadata"]["name"] == "rancher-remap-tls")
                .unwrap();
            assert_eq!(secret["metadata"]["namespace"], ns, "{what}");
            let data = self::secret(secret).data.unwrap();
            for bundle in ca_bundles(install) {
                verifies(&bundle, &data["tls.crt"].0, &serving)
                    .expect("the serving certificate verifies for the new namespace");
            }
        }
    }
    if overlay == "destination" {
        let d = install.deployment();
        assert_eq!(
            env(container(&d), "RANCHER_REMAP_MAPPINGS_CONFIGMAP"),
            Some(format!("{ns}/{DEFAULT_CONFIGMAP_NAME}").as_str()),
            "{what}"
        );
    }
}
