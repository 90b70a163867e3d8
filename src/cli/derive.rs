//! `rancher-remap derive`: the mapping ConfigMap of docs/behaviour.md, from ClusterPairs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::{input, OutputFormat};
use crate::clusterpair::{current_identity, ClusterPair, Identity};
use crate::mapping::objects::{
    entries_text, parse_configmap_data, DEFAULT_CONFIGMAP_NAME, MAPPINGS_LABEL,
    MIGRATION_USERS_ANNOTATION,
};
use crate::mapping::Table;
use serde_json::json;

/// Derive the mapping ConfigMap from ClusterPair(s).
///
/// Each ClusterPair's spec.platformOptions.rancher.projectMappings becomes one data key,
/// `<clusterpair-namespace>.<clusterpair-name>`. The identity the ClusterPair authenticates
/// with (client certificate CN or JWT token subject, or with --whoami the user its API server
/// names; never the credential) is recorded in the rancher-remap.io/migration-users
/// annotation. Invalid mappings are refused (exit 1).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// ClusterPair files (YAML or JSON; several ClusterPairs give several data keys); `-` is stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// Namespace of the ConfigMap: the namespace rancher-remap runs in.
    #[arg(short, long, default_value = "rancher-remap")]
    pub namespace: String,

    /// Name of the ConfigMap.
    #[arg(long, default_value = DEFAULT_CONFIGMAP_NAME)]
    pub name: String,

    /// Swap source and destination, for failback. The ClusterPair's own credentials then
    /// belong to the other cluster, so no migration user is derived from them.
    #[arg(long)]
    pub reverse: bool,

    /// A migration identity to record besides the derived one (repeatable).
    #[arg(long, value_name = "NAME")]
    pub migration_user: Vec<String>,

    /// Ask the API server each ClusterPair names who its credentials authenticate as (a
    /// SelfSubjectReview made with the pair's own credentials, which are never printed or
    /// kept), instead of reading the certificate's CN or the token's sub claim. Without it,
    /// derive makes no network call.
    #[arg(long, conflicts_with = "reverse")]
    pub whoami: bool,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut err = std::io::stderr().lock();
    let mut data = BTreeMap::new();
    let mut users = args.migration_user.clone();
    let mut failed = false;
    // Only --whoami goes to the network.
    let runtime = args.whoami.then(tokio::runtime::Runtime::new).transpose()?;

    for obj in input::read_some_objects(&args.files, "ClusterPair")? {
        let cp = match ClusterPair::from_value(&obj) {
            Ok(cp) => cp,
            Err(e) => {
                writeln!(err, "error: {}: {e}", crate::rewrite::describe(&obj))?;
                failed = true;
                continue;
            }
        };
        let who = format!("ClusterPair {}/{}", cp.metadata.namespace, cp.metadata.name);
        let mut parsed = cp.parse_mappings();
        if parsed.entries.is_empty() && parsed.errors.is_empty() {
            writeln!(err, "error: {who} has no spec.platformOptions.rancher.projectMappings (storkctl generate clusterpair ... --project-mappings src=dst,...)")?;
            failed = true;
            continue;
        }
        if args.reverse {
            // No two sources may map to one destination, which the reversed table would hold
            // as one source mapped to two. (A table that does not build is reported once,
            // reversed, below.)
            let table = Table::build(parsed.clone()).unwrap_or_default();
            for w in table.many_to_one() {
                writeln!(err, "error: {who}: {}: --reverse: {w}", w.field_path())?;
                failed = true;
            }
            if table.many_to_one().next().is_some() {
                continue;
            }
            parsed.entries.iter_mut().for_each(|e| e.reverse());
        }
        let table = match Table::build(parsed) {
            Ok(table) => table,
            Err(errors) => {
                for e in errors.0 {
                    writeln!(err, "error: {who}: {}: {e}", e.field_path())?;
                }
                failed = true;
                continue;
            }
        };
        data.insert(cp.data_key(), entries_text(table.entries()));
        if args.reverse {
            writeln!(err, "note: --reverse: {who}'s credentials are for the other cluster; name the failback migration identity with --migration-user")?;
            continue;
        }
        match identity(&cp, runtime.as_ref()) {
            Some(Identity::User(u)) => users.push(u),
            Some(Identity::Unknown(why)) => writeln!(err, "note: cannot tell the migration identity of {who}: {why}; name it with --migration-user")?,
            None => writeln!(err, "note: {who} has no spec.config; name the migration identity with --migration-user")?,
        }
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    let at = (args.namespace.as_str(), args.name.as_str());
    print_configmap(&mut err, at, args.output, &data, users)
}

/// Prints the mapping ConfigMap `namespace/name` (`derive`'s, and `map-projects`' too): checks
/// the data keys together, as the server will, prints the table's warnings and how to install
/// on `err`, then the ConfigMap on stdout. Exit 1, printing nothing on stdout, when the keys
/// together do not make a table.
pub(super) fn print_configmap(
    err: &mut impl Write,
    (namespace, name): (&str, &str),
    output: OutputFormat,
    data: &BTreeMap<String, String>,
    mut users: Vec<String>,
) -> Result<ExitCode> {
    let Some(table) = checked_table(err, data)? else {
        return Ok(ExitCode::FAILURE);
    };
    users.sort();
    users.dedup();
    say_how_to_install(err, &table, &users, namespace)?;
    // The mapping ConfigMap (docs/behaviour.md).
    let mut cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { MAPPINGS_LABEL: "true" },
        },
        "data": data,
    });
    if !users.is_empty() {
        cm["metadata"]["annotations"] = json!({ MIGRATION_USERS_ANNOTATION: users.join(",") });
    }
    input::print(&input::render(vec![cm], output)?)?;
    Ok(ExitCode::SUCCESS)
}

/// The table the data keys make together, as the server will check them, its warnings said on
/// `err`; `None` (the errors said) when they do not make one.
pub(super) fn checked_table(
    err: &mut impl Write,
    data: &BTreeMap<String, String>,
) -> Result<Option<Table>> {
    match Table::build(parse_configmap_data(data)) {
        Ok(table) => {
            for w in table.warnings() {
                writeln!(err, "warning: {}: {w}", w.field_path())?;
            }
            Ok(Some(table))
        }
        Err(errors) => {
            for e in errors.0 {
                writeln!(err, "error: {e}")?;
            }
            Ok(None)
        }
    }
}

/// Who `cp` authenticates as: asked of its API server with `runtime` (--whoami), else read
/// from its credential.
fn identity(cp: &ClusterPair, runtime: Option<&tokio::runtime::Runtime>) -> Option<Identity> {
    let config = cp.spec.config.as_ref()?;
    Some(match runtime {
        Some(rt) => match rt.block_on(super::whoami::ask(config)) {
            Ok((user, _)) => Identity::User(user),
            Err(e) => Identity::Unknown(format!("--whoami: {e:#}")),
        },
        None => current_identity(config),
    })
}

/// Says, on stderr, the destination cluster the table maps to (the install's `clusterId`) and
/// the migration users recorded: what the operator copies into the install.
fn say_how_to_install(
    err: &mut impl Write,
    table: &Table,
    users: &[String],
    namespace: &str,
) -> std::io::Result<()> {
    match table.destination_clusters()[..] {
        [cluster] => {
            writeln!(err, "destination cluster: {cluster}")?;
            // The commands that install the destination side, with the placeholders they hold
            // named (the chart's schema requires `image.repository`).
            write!(
                err,
                "  install on that cluster with (fill in <image-repository>: the registry and repository \
you pushed the rancher-remap image to, which the chart requires as image.repository; \
<chart>: charts/rancher-remap in a checkout, or the packaged chart; \
<configmap.yaml>: this ConfigMap, saved):
    kubectl create namespace {namespace}
    kubectl label namespace {namespace} pod-security.kubernetes.io/enforce=restricted
    kubectl apply -f <configmap.yaml>
    helm install rancher-remap <chart> -n {namespace} --set role=destination --set image.repository=<image-repository> --set clusterId={cluster}
"
            )?;
            writeln!(err, "  (kustomize: clusterId: \"{cluster}\" in deploy/destination/cluster-id.yaml)")?;
        }
        [] => writeln!(err, "note: no C:P entry names the destination cluster; give both forms as Stork recommends (p-a=p-b,c-src:p-a=c-dst:p-b), or find this cluster's ID in Rancher (Cluster Management, or the cluster part of any project Namespace's field.cattle.io/projectId annotation)")?,
        ref several => writeln!(err, "warning: the table maps to several clusters ({}): the server on each refuses a table whose destinations name another cluster; derive one ConfigMap per destination cluster", several.join(", "))?,
    }
    if users.is_empty() {
        writeln!(err, "migration users: none recorded (optional: Namespaces are recognised by their Rancher annotation)")
    } else {
        writeln!(err, "migration users: {}", users.join(", "))
    }
}
