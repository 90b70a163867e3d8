//! `rancher-remap doctor`: reads the destination cluster (the edge) and prints what
//! [`crate::doctor`] makes of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};

use super::cluster::Connected;
use super::whoami::CALL_TIMEOUT;
use crate::clusterpair::{ClusterPair, KubeConfig};
use crate::doctor::{self, Facts, IdentityAccess, Report, ServingCert, WebhookFacts};
use crate::kube_error::KubeError;
use crate::mapping::objects::{Mappings, DEFAULT_CONFIGMAP_NAME};
use crate::source::{ConfigMapRef, ReadError, Source};

/// Ask the destination cluster whether a migration will land: the table, this cluster's ID,
/// the destination projects, the table's direction, the migration identities' permissions and
/// the webhook's wiring. Run it before install with --mappings-file, and after install plainly.
/// Exit status: 0 when no check fails, 1 when one does, 2 when it could not check (unreachable,
/// forbidden). Kubernetes credentials: --kubeconfig, else in-cluster, KUBECONFIG or
/// ~/.kube/config.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub cluster: super::cluster::ClusterArgs,

    /// The install's namespace.
    #[arg(short, long, value_name = "NS", default_value = "rancher-remap")]
    pub namespace: String,

    /// The install's name: its Deployment (the chart's fullname).
    #[arg(long, value_name = "NAME", default_value = "rancher-remap")]
    pub name: String,

    /// Check this mappings file (a mapping ConfigMap, ClusterPair(s) or src=dst text) instead
    /// of the installed mapping ConfigMap.
    #[arg(long, value_name = "PATH", conflicts_with = "project_mappings")]
    pub mappings_file: Option<PathBuf>,

    /// Check these mappings (storkctl's --project-mappings syntax) instead of the installed
    /// mapping ConfigMap.
    #[arg(long, value_name = "STR")]
    pub project_mappings: Option<String>,

    /// This cluster's Rancher ID. Default: the install's (the Deployment's environment).
    #[arg(long, value_name = "ID", value_parser = super::parse_cluster_id)]
    pub cluster_id: Option<String>,

    /// A user Stork migrates with (repeatable), checked as the ConfigMap's and the install's.
    #[arg(long = "migration-user", value_name = "NAME")]
    pub migration_users: Vec<String>,

    /// A ClusterPair file: its identity is asked of the API server with its own credentials
    /// (a SelfSubjectReview), which are never printed or kept.
    #[arg(long, value_name = "FILE")]
    pub clusterpair: Option<PathBuf>,

    /// Output format: table (one line per check) or json
    /// (`{"checks": [{"name", "status", "message"}]}`).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: super::ReportFormat,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let output = args.output;
    // Could not check: exit 2 (1 means a check failed).
    let (status, report) = match tokio::runtime::Runtime::new()?.block_on(doctor(args)) {
        Ok(report) => (report.exit_status(), report),
        Err(e) => {
            let message = format!("could not check: {e:#}; without a cluster, `rancher-remap check --cluster-id ID -f mappings.yaml` checks a table offline");
            eprintln!("doctor: {message}");
            if output == super::ReportFormat::Table {
                return Ok(ExitCode::from(2));
            }
            // The JSON promised, for scripts: one entry saying why nothing was checked.
            let check = doctor::Check::new("could-not-check", doctor::Status::Fail, message);
            let checks = vec![check];
            (2, Report { checks })
        }
    };
    let text = match output {
        super::ReportFormat::Json => super::input::pretty_json(&report)?,
        super::ReportFormat::Table => report
            .checks
            .iter()
            .map(|c| format!("{:<5} {:<21} {}\n", c.status.as_str(), c.name, c.message))
            .collect(),
    };
    super::input::print(&text)?;
    Ok(ExitCode::from(status))
}

/// A call doctor could not make, as the sentence it prints: `what` was asked of the API server
/// `at` (`get deployments.apps rancher-remap in namespace rancher-remap`, which is also what RBAC
/// must allow).
fn failed(at: &Connected, what: &str, e: impl Into<KubeError>) -> anyhow::Error {
    let server = &at.server;
    match e.into() {
        KubeError::Forbidden(_) => {
            anyhow!("{what} at {server}: forbidden; doctor needs RBAC permission to {what}")
        }
        e => anyhow!(e.of_call(what, server, "the API server")),
    }
}

async fn doctor(args: Args) -> Result<Report> {
    // A --clusterpair file that cannot be used is "could not check" (exit 2), before any call.
    let pair = args.clusterpair.as_ref().map(|path| {
        let from = format!("--clusterpair {}", path.display());
        anyhow::Ok((
            read_pair(path).with_context(|| format!("reading {from}"))?,
            from,
        ))
    });
    let pair = pair.transpose()?;
    let at = args.cluster.connect(Some(CALL_TIMEOUT)).await?;
    let ns = args.namespace.as_str();
    let what = format!("get deployments.apps {} in namespace {ns}", args.name);
    let deployment = Api::<Deployment>::namespaced(at.client.clone(), ns)
        .get_opt(&args.name)
        .await
        .map_err(|e| failed(&at, &what, e))?;
    let env = deployment_env(deployment.as_ref());
    let (mappings, mappings_origin) = read_mappings(&args, &at, &env).await?;
    let (namespace_clusters, system_cluster) = namespace_clusters(&at).await?;
    let projects_here = projects_here(&at).await?;
    let (identities, identity_notes) = identities(&args, &at, &mappings, &env, pair).await?;
    let table_given = args.mappings_file.is_some() || args.project_mappings.is_some();
    let before_install = deployment.is_none() && table_given;
    let webhook = if before_install {
        None
    } else {
        let kept = env.get("RANCHER_REMAP_CERT_SECRET").map(String::as_str);
        Some(webhook_facts(&at, ns, deployment.as_ref(), kept).await?)
    };
    let policy = match policy_facts(&at.client).await {
        Ok(policy) => Ok(policy),
        // Without list on the policies the webhook is still checked; the policies are not.
        Err(KubeError::Forbidden(answer)) => Err(format!("not checked: listing MutatingAdmissionPolicies at {} is forbidden ({answer}); doctor needs list on mutatingadmissionpolicies and mutatingadmissionpolicybindings (admissionregistration.k8s.io)", at.server)),
        Err(e) => return Err(failed(&at, "list mutatingadmissionpolicies.admissionregistration.k8s.io", e)),
    };
    let cluster_id = match super::known_cluster_id(&args.cluster_id) {
        Some(c) => Some((c.to_string(), "--cluster-id".to_string())),
        None => env
            .get("RANCHER_REMAP_CLUSTER_ID")
            .map(|c| (c.clone(), format!("the Deployment {ns}/{}", args.name))),
    };
    Ok(doctor::run(&Facts {
        mappings,
        mappings_origin,
        cluster_id,
        namespace_clusters,
        system_cluster,
        projects_here,
        identities,
        identity_notes,
        webhook,
        policy,
        table_given,
    }))
}

/// The literal environment of the install's server container; an empty value is no value.
fn deployment_env(d: Option<&Deployment>) -> BTreeMap<String, String> {
    let pod = d.and_then(|d| d.spec.as_ref()?.template.spec.as_ref());
    // The server's container by name (a sidecar may come first), else the first.
    let container = pod.and_then(|p| {
        let by_name = p.containers.iter().find(|c| c.name == "rancher-remap");
        by_name.or(p.containers.first())
    });
    let vars = container.and_then(|c| c.env.as_ref()).into_iter().flatten();
    let mut env: BTreeMap<_, _> = vars
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    env.retain(|_, v| !v.is_empty());
    env
}

/// The table (or why there is none) and where it came from.
async fn read_mappings(
    args: &Args,
    at: &Connected,
    env: &BTreeMap<String, String>,
) -> Result<(Result<Mappings, String>, String)> {
    let (source, origin) = match (&args.project_mappings, &args.mappings_file) {
        (Some(text), _) => (Source::Static(text.clone()), "--project-mappings".into()),
        (_, Some(path)) => {
            let origin = format!("--mappings-file {}", path.display());
            (Source::File(path.clone()), origin)
        }
        _ => {
            let named = env
                .get("RANCHER_REMAP_MAPPINGS_CONFIGMAP")
                .map_or(DEFAULT_CONFIGMAP_NAME, String::as_str);
            let (ns, name) = named.split_once('/').unwrap_or((&args.namespace, named));
            let cm = ConfigMapRef {
                namespace: ns.into(),
                name: name.into(),
            };
            (Source::ConfigMap(cm), format!("ConfigMap {ns}/{name}"))
        }
    };
    // A source that cannot be read is "could not check" (exit 2); one that reads but holds no
    // good table is the `mappings` check failing (exit 1).
    let m = match source.read(Some(&at.client)).await {
        Ok(m) => Ok(m),
        Err(ReadError::Invalid { why, .. }) => Err(why.to_string()),
        Err(ReadError::Api {
            why: KubeError::NotFound(_),
            ..
        }) => Err("not found".to_string()),
        Err(ReadError::File { path, why }) => {
            bail!("reading --mappings-file {}: {why}", path.display())
        }
        Err(ReadError::Api { at: cm, why }) => {
            let what = format!("get configmaps {} in namespace {}", cm.name, cm.namespace);
            return Err(failed(at, &what, why));
        }
        Err(e) => return Err(e.into()),
    };
    Ok((m, origin))
}

/// The cluster part of each Rancher-annotated Namespace (counted), and `kube-system`'s.
async fn namespace_clusters(at: &Connected) -> Result<(BTreeMap<String, usize>, Option<String>)> {
    let (mut clusters, mut system) = (BTreeMap::new(), None);
    for n in metadata_of_all::<Namespace>(at, "list namespaces").await? {
        let annotations = n.annotations.unwrap_or_default();
        let cluster = crate::rewrite::NAMESPACE_PROJECT_KEYS
            .iter()
            .find_map(|k| Some(annotations.get(*k)?.split_once(':')?.0.to_string()));
        let Some(c) = cluster else { continue };
        if n.name.as_deref() == Some("kube-system") {
            system = Some(c.clone());
        }
        *clusters.entry(c).or_insert(0) += 1;
    }
    Ok((clusters, system))
}

/// Projects whose `-namespaces-edit` ClusterRole Rancher made here.
async fn projects_here(at: &Connected) -> Result<BTreeSet<String>> {
    let what = "list clusterroles.rbac.authorization.k8s.io";
    Ok(metadata_of_all::<ClusterRole>(at, what)
        .await?
        .into_iter()
        .filter_map(|m| m.name?.strip_suffix("-namespaces-edit").map(str::to_string))
        .collect())
}

/// The metadata of every object of a kind, 500 a page: a Rancher cluster's thousands of
/// ClusterRoles and Namespaces are read as names and annotations only, a page at a time (the
/// `helm test` Pod has 128 MiB).
async fn metadata_of_all<K>(at: &Connected, what: &str) -> Result<Vec<ObjectMeta>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api = Api::<K>::all(at.client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api
            .list_metadata(&params)
            .await
            .map_err(|e| failed(at, what, e))?;
        out.extend(page.items.into_iter().map(|m| m.metadata));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Every migration identity named (first naming wins), with what it may not do of the
/// destination projects' needs (asked with the groups its requests carry), and what could not
/// be learned.
async fn identities(
    args: &Args,
    at: &Connected,
    mappings: &Result<Mappings, String>,
    env: &BTreeMap<String, String>,
    pair: Option<(KubeConfig, String)>,
) -> Result<(Vec<IdentityAccess>, Vec<String>)> {
    let mut named: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut add = |user: &str, from: &str, groups: Option<Vec<String>>| {
        if !user.is_empty() && !named.iter().any(|(n, ..)| n == user) {
            let groups = groups.unwrap_or_else(|| implied_groups(user));
            named.push((user.to_string(), from.to_string(), groups));
        }
    };
    for u in &args.migration_users {
        add(u.trim(), "--migration-user", None);
    }
    for u in mappings.iter().flat_map(|m| &m.migration_users) {
        add(u, "the mapping ConfigMap", None);
    }
    let installed = env.get("RANCHER_REMAP_MIGRATION_USER");
    for u in installed.map_or("", String::as_str).split(',') {
        add(u.trim(), "the install", None);
    }
    let mut notes = Vec::new();
    // The pair's API server refusing or unreachable: a note (the other checks still stand).
    if let Some((config, from)) = pair {
        match super::whoami::ask(&config).await {
            Ok((user, groups)) => add(&user, &from, Some(groups)),
            Err(e) => notes.push(format!("{from}: identity not learned: {e:#}")),
        }
    }
    let projects = mappings.as_ref().map(|m| doctor::projects(m, true));
    let projects = projects.unwrap_or_default();
    let mut identities = Vec::new();
    for (user, from, groups) in named {
        let denied = denials(at, &user, &groups, &projects).await?;
        identities.push(IdentityAccess { user, from, denied });
    }
    Ok((identities, notes))
}

/// The groups the API server's authenticators give a user known by name only: every
/// authenticated user's, and a ServiceAccount's own two. (Other groups are unknown: a
/// permission granted only through one shows as a denial.)
fn implied_groups(user: &str) -> Vec<String> {
    let mut groups = vec!["system:authenticated".to_string()];
    let service_account = user.strip_prefix("system:serviceaccount:");
    if let Some(ns) = service_account.and_then(|rest| rest.split(':').next()) {
        groups.push("system:serviceaccounts".into());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    groups
}

/// The kubeconfig of a ClusterPair file, to learn whom it authenticates as (see
/// [`super::whoami`]). Messages never quote the file: it holds credentials.
fn read_pair(path: &std::path::Path) -> Result<KubeConfig> {
    let text = std::fs::read_to_string(path)?;
    let doc = crate::manifest::parse_documents(&text)
        .ok()
        .and_then(|d| d.into_iter().find(crate::clusterpair::is_clusterpair))
        .ok_or_else(|| anyhow!("no ClusterPair in it"))?;
    let config = ClusterPair::from_value(&doc)?.spec.config;
    config.ok_or_else(|| anyhow!("it has no spec.config"))
}

/// What `user` may not do of what Rancher's webhook asks for a migrated Namespace: create
/// Namespaces, and manage-namespaces on each destination project.
async fn denials(
    at: &Connected,
    user: &str,
    groups: &[String],
    projects: &BTreeSet<String>,
) -> Result<Vec<(String, String)>> {
    let namespaces = ResourceAttributes {
        resource: Some("namespaces".into()),
        ..Default::default()
    };
    let namespaces = ("create", namespaces, "namespaces".to_string());
    let project = crate::rancher::resource("Project");
    let each_project = projects.iter().map(|p| {
        let asked = ResourceAttributes {
            group: Some(project.group.clone()),
            resource: Some(project.plural.clone()),
            name: Some(p.clone()),
            ..Default::default()
        };
        let what = format!("project {p} ({}.{})", project.plural, project.group);
        ("manage-namespaces", asked, what)
    });
    let api: Api<SubjectAccessReview> = Api::all(at.client.clone());
    let mut denied = Vec::new();
    for (verb, asked, what) in std::iter::once(namespaces).chain(each_project) {
        let resource_attributes = ResourceAttributes {
            verb: Some(verb.into()),
            ..asked
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.to_string()),
                groups: Some(groups.to_vec()),
                resource_attributes: Some(resource_attributes),
                ..Default::default()
            },
            ..Default::default()
        };
        let ask = "create subjectaccessreviews.authorization.k8s.io";
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| failed(at, ask, e))?;
        if !answer.status.is_some_and(|s| s.allowed) {
            denied.push((verb.to_string(), what));
        }
    }
    Ok(denied)
}

/// The installed webhook's wiring: its configuration, its serving certificate (mounted, or kept
/// by the server in the Secret `kept`, its `RANCHER_REMAP_CERT_SECRET`), and its ready replicas.
async fn webhook_facts(
    at: &Connected,
    ns: &str,
    deployment: Option<&Deployment>,
    kept: Option<&str>,
) -> Result<WebhookFacts> {
    let what = "list mutatingwebhookconfigurations.admissionregistration.k8s.io";
    let list = Api::<MutatingWebhookConfiguration>::all(at.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| failed(at, what, e))?;
    let found = list.items.into_iter().find_map(|c| {
        let hook = c.webhooks?.into_iter().find(|w| {
            w.name == "rewrite.rancher-remap.io"
                && matches!(&w.client_config.service, Some(s) if s.namespace == ns)
        })?;
        Some((c.metadata.name.unwrap_or_default(), hook))
    });
    let service = found
        .as_ref()
        .and_then(|(_, h)| h.client_config.service.as_ref())
        .map_or("rancher-remap", |s| s.name.as_str());
    Ok(WebhookFacts {
        service_dns: format!("{service}.{ns}.svc"),
        configuration: found,
        serving_cert: serving_cert(at, ns, deployment, kept).await?,
        ready_replicas: deployment.map(|d| {
            d.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        }),
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    })
}

/// `tls.crt` of the Secret the Deployment mounts, or of the server's own Secret `kept`
/// (`[NS/]NAME`); never a key, never printed.
async fn serving_cert(
    at: &Connected,
    ns: &str,
    deployment: Option<&Deployment>,
    kept: Option<&str>,
) -> Result<ServingCert> {
    let mounted = deployment
        .and_then(|d| d.spec.as_ref()?.template.spec.as_ref()?.volumes.as_ref())
        .into_iter()
        .flatten()
        .find_map(|v| v.secret.as_ref()?.secret_name.clone());
    let (secret_ns, name) = match (mounted, kept) {
        (Some(name), _) => (ns.to_string(), name),
        (None, Some(kept)) => {
            // A name alone is in the server's own namespace: the install's.
            let (n, name) = kept.split_once('/').unwrap_or((ns, kept));
            (n.to_string(), name.to_string())
        }
        (None, None) => {
            return Ok(ServingCert::Missing(
                "the Deployment mounts no Secret and keeps none".into(),
            ))
        }
    };
    let api: Api<Secret> = Api::namespaced(at.client.clone(), &secret_ns);
    let what = format!("get secrets {name} in namespace {secret_ns}");
    let secret = match api.get_opt(&name).await.map_err(KubeError::from) {
        Ok(s) => s,
        // The server's own Secret holds its CA key: an identity that may not read it (the helm
        // test's) checks the caBundle alone.
        Err(KubeError::Forbidden(_)) if kept.is_some() => {
            return Ok(ServingCert::ServerKept(format!("{secret_ns}/{name}")))
        }
        Err(e) => return Err(failed(at, &what, e)),
    };
    Ok(match secret.and_then(|s| s.data?.remove("tls.crt")) {
        Some(crt) => ServingCert::Pem(crt.0),
        None if kept.is_some() => ServingCert::Missing(format!("Secret {secret_ns}/{name} holds no serving certificate yet: the server makes it on its first start (kubectl logs deployment/rancher-remap)")),
        None => ServingCert::Missing(format!("Secret {secret_ns}/{name} has no tls.crt")),
    })
}

/// export-policy's MutatingAdmissionPolicies and bindings here (by the label it gives them);
/// `None` when there are none, or when the API server does not serve
/// `admissionregistration.k8s.io/v1` MutatingAdmissionPolicies (before Kubernetes 1.36).
async fn policy_facts(client: &kube::Client) -> Result<Option<doctor::PolicyFacts>, KubeError> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let kinds = ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"];
    let mut found = [Vec::new(), Vec::new()];
    for (kind, out) in kinds.into_iter().zip(&mut found) {
        let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
        let params = ListParams::default().labels("app.kubernetes.io/component=admission-policy");
        *out = match api.list(&params).await.map_err(KubeError::from) {
            Ok(list) => list.items,
            // Not served before 1.36: the webhook is the rewrite path.
            Err(KubeError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
    }
    let [policies, bindings] = found;
    let any = !policies.is_empty() || !bindings.is_empty();
    Ok(any.then_some(doctor::PolicyFacts { policies, bindings }))
}
