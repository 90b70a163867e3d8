//! `rancher-remap export-policy`: the rewrite as MutatingAdmissionPolicies the API server runs
//! itself (Kubernetes 1.36), with the checked table in them. The objects are made in
//! [`crate::policy`]; this reads flags and the table, and prints.

use std::process::ExitCode;

use anyhow::Result;

use super::cluster::ClusterArgs;
use crate::policy::{self, Settings};
use crate::source::Source;

/// Print the rewrite as MutatingAdmissionPolicies for the Kubernetes 1.36 API server.
///
/// Prints one YAML stream: two admissionregistration.k8s.io/v1 MutatingAdmissionPolicies
/// (every resource's labels and annotations; the built-in workloads' pod templates, affinity
/// and NetworkPolicy namespace selectors), each holding the checked table, this cluster's ID
/// and the migration users, and their bindings. Apply it with `kubectl apply --server-side -f`,
/// or give it to the chart (`--set rewrite=policy --set-file policy=FILE`); after a table
/// change export again and apply: the policies are updated in place. The table is checked as
/// `check --cluster-id` checks it; a bad one prints nothing and exits 1.
/// `--unmapped deny` is refused: a mutation cannot refuse a write (run the webhook for that).
/// What the policies do not cover, and the cost limits: docs/admission-policy.md.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: super::SourceArgs,

    /// With --mappings-configmap: the cluster to read it from.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// This cluster's Rancher ID (as `derive` prints it): its own Namespaces are never
    /// rewritten, and a table reversed or made for another cluster is refused.
    #[arg(long, env = "RANCHER_REMAP_CLUSTER_ID", value_name = "ID", value_parser = super::parse_cluster_id, required = true)]
    pub cluster_id: String,

    /// A user whose Namespace writes count as migrations, as the shipped webhook's
    /// matchConditions count them (repeatable; the table's own are added).
    #[arg(long, value_name = "NAME")]
    pub migration_user: Vec<String>,

    /// What to do with a project ID that has no mapping: drop removes the label or annotation
    /// (selectors are never shortened), keep leaves it. deny is refused: a mutation cannot
    /// refuse a write.
    #[arg(long, value_enum, default_value_t)]
    pub unmapped: crate::rewrite::UnmappedPolicy,

    /// The install's namespace (the chart's release namespace), left out of the policies as the
    /// webhook's own namespace is.
    #[arg(short, long, default_value = "rancher-remap", value_name = "NS")]
    pub namespace: String,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let source = args.source.required()?;
    if args.cluster_id.is_empty() {
        anyhow::bail!("--cluster-id is empty: the policy must know this cluster's Rancher ID");
    }
    let settings = Settings {
        namespace: args.namespace.clone(),
        cluster_id: args.cluster_id.clone(),
        migration_users: args.migration_user.clone(),
        unmapped: args.unmapped,
    };
    // Refused before any table is read or any cluster asked.
    if settings.unmapped == crate::rewrite::UnmappedPolicy::Deny {
        return Err(policy::PolicyError::Deny.into());
    }
    let mappings = tokio::runtime::Runtime::new()?.block_on(async {
        let client = match &source {
            Source::ConfigMap(_) => Some(args.cluster.connect(None).await?.client),
            _ => None,
        };
        anyhow::Ok(source.read(client.as_ref()).await?)
    })?;
    let mappings = super::input::checked_mappings(mappings, Some(&settings.cluster_id))?;
    let objects = policy::export(&mappings, &settings)?;
    let yaml = crate::manifest::to_yaml_stream(&objects)?;
    super::input::print(&(policy::HEADER.to_string() + &yaml))?;
    Ok(ExitCode::SUCCESS)
}
