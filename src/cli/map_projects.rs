//! `rancher-remap map-projects`: reads Rancher's clusters and projects off its management
//! cluster (the edge), pairs the projects with [`crate::rancher::pair`], and prints the mapping
//! ConfigMap through `derive`'s own writer.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde_json::Value;

use super::cluster::{ClusterArgs, Connected};
use super::derive::{checked_table, print_configmap};
use crate::kube_error::KubeError;
use crate::mapping::objects::{entries_text, DEFAULT_CONFIGMAP_NAME};
use crate::rancher::{
    self, pair, resolve_cluster, resource, Cluster, How, Match, Named, Pairing, Project, Rename,
};

/// Map a source cluster's Rancher projects to a destination cluster's by display name, and
/// print the mapping ConfigMap (as `derive` prints one) and storkctl's --project-mappings.
///
/// Reads Rancher's management cluster (the `local` cluster Rancher runs on; --kubeconfig and
/// --context as kubectl picks them): clusters.management.cattle.io, and
/// projects.management.cattle.io in the namespace named after each cluster's ID. Projects
/// pair by display name, exactly first, then ignoring case; --map pairs renamed ones. stdout:
/// the ConfigMap (data key `<source>.<destination>` cluster IDs, both `p-…` and `c-…:p-…`
/// forms, no migration-users annotation); stderr: the matched, unmatched and ambiguous
/// projects and the --project-mappings argument. Exit status 1, printing no ConfigMap, when a
/// source project has no destination project (unless --create-missing) or a name is held by
/// several projects on one side. RBAC: get and list on clusters and projects
/// (management.cattle.io), and create on projects for --create-missing.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source cluster (migrated from): its Rancher ID (c-7gh2k) or display name.
    #[arg(long, value_name = "CLUSTER")]
    pub source: String,

    /// The destination cluster (migrated to): its Rancher ID or display name.
    #[arg(long, value_name = "CLUSTER")]
    pub destination: String,

    /// Namespace of the ConfigMap: the namespace rancher-remap runs in on the destination.
    #[arg(short, long, default_value = "rancher-remap")]
    pub namespace: String,

    /// A project renamed on the destination: "SOURCE NAME=DESTINATION NAME", display names
    /// (repeatable).
    #[arg(long = "map", value_name = "OLD=NEW")]
    pub maps: Vec<Rename>,

    /// Create each source project missing on the destination there (a Project with
    /// generateName p-, the same display name and spec.clusterName), shown on stderr first.
    #[arg(long)]
    pub create_missing: bool,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The kubeconfig of the Rancher that manages the destination, when another Rancher does.
    /// Default: --kubeconfig.
    #[arg(long, value_name = "FILE")]
    pub destination_kubeconfig: Option<PathBuf>,

    /// The context of that Rancher's management cluster. Default: --context, unless
    /// --destination-kubeconfig is given (then its current context).
    #[arg(long, value_name = "NAME")]
    pub destination_context: Option<String>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

/// What `map-projects` prints on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The mapping ConfigMap, as `derive` prints it.
    #[default]
    Yaml,
    /// One JSON object: {"mappings": {src: dst}, "projectMappings", "matched", "unmatched",
    /// "ambiguous"}.
    Json,
}

impl Args {
    /// The management cluster that holds the destination: the source's unless another is
    /// named.
    fn destination_side(&self) -> Option<ClusterArgs> {
        let (kubeconfig, context) = (&self.destination_kubeconfig, &self.destination_context);
        (kubeconfig.is_some() || context.is_some()).then(|| ClusterArgs {
            kubeconfig: kubeconfig.clone().or(self.cluster.kubeconfig.clone()),
            context: context.clone(),
        })
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    tokio::runtime::Runtime::new()?.block_on(map_projects(args))
}

/// Rancher's management cluster, and what it holds.
struct Management {
    at: Connected,
    clusters: Vec<Cluster>,
}

impl Management {
    async fn read(args: &ClusterArgs) -> Result<Management> {
        let at = args.connect(Some(super::whoami::CALL_TIMEOUT)).await?;
        let clusters = list(&at, "Cluster", None).await?;
        Ok(Management { at, clusters })
    }

    /// The cluster `given` names (`flag` for messages).
    fn cluster(&self, flag: &str, given: &str) -> Result<Cluster> {
        resolve_cluster(given, &self.clusters)
            .cloned()
            .map_err(|e| anyhow!("{flag}: {e} (Rancher at {})", self.at.server))
    }
}

async fn map_projects(args: Args) -> Result<ExitCode> {
    let mut err = std::io::stderr().lock();
    let source_side = Management::read(&args.cluster).await?;
    let destination_side = match args.destination_side() {
        Some(other) => Some(Management::read(&other).await?),
        None => None,
    };
    let dst_side = destination_side.as_ref().unwrap_or(&source_side);
    let src = source_side.cluster("--source", &args.source)?;
    let dst = dst_side.cluster("--destination", &args.destination)?;
    if src.id == dst.id {
        let id = &src.id;
        bail!("--source and --destination are both cluster {id}: a migration goes from one cluster to another");
    }
    let sources = list(&source_side.at, "Project", Some(&src.id)).await?;
    if sources.is_empty() {
        let (id, server) = (&src.id, &source_side.at.server);
        bail!("cluster {id} has no projects (none in namespace {id} at {server})");
    }
    let destinations = list(&dst_side.at, "Project", Some(&dst.id)).await?;
    let mut pairing = match pair(&sources, &destinations, &args.maps) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                writeln!(err, "error: {e}")?;
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.create_missing && pairing.ambiguous.is_empty() && !pairing.unmatched.is_empty() {
        create_missing(&mut err, &dst_side.at, &dst, &mut pairing).await?;
    }
    write!(err, "{}", report(&src, &dst, &pairing))?;
    if !pairing.is_complete() {
        if args.output == Format::Json {
            print_json(&pairing, &[])?;
        }
        writeln!(err, "error: {}", refusal(&pairing, args.create_missing))?;
        return Ok(ExitCode::FAILURE);
    }
    let entries = rancher::entries(&pairing.matched, &src.id, &dst.id);
    writeln!(
        err,
        "storkctl generate clusterpair ... --project-mappings {}",
        project_mappings(&entries)
    )?;
    let data = BTreeMap::from([(
        format!("{}.{}", src.id, dst.id),
        entries_text(entries.iter().map(|(s, d)| (s, d))),
    )]);
    match args.output {
        Format::Yaml => {
            writeln!(err, "note: no rancher-remap.io/migration-users annotation: no ClusterPair names the identity Stork writes with (optional; `rancher-remap derive` records it from the ClusterPair)")?;
            let at = (args.namespace.as_str(), DEFAULT_CONFIGMAP_NAME);
            print_configmap(&mut err, at, super::OutputFormat::Yaml, &data, Vec::new())
        }
        Format::Json => {
            if checked_table(&mut err, &data)?.is_none() {
                return Ok(ExitCode::FAILURE);
            }
            print_json(&pairing, &entries)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Creates a Project on `dst` for each unmatched source project, shown first, and pairs them.
async fn create_missing(
    err: &mut impl Write,
    at: &Connected,
    dst: &Cluster,
    pairing: &mut Pairing,
) -> Result<()> {
    let ar = resource("Project");
    let api: Api<DynamicObject> = Api::namespaced_with(at.client.clone(), &dst.id, &ar);
    let unmatched = std::mem::take(&mut pairing.unmatched);
    let objects: Vec<Value> = unmatched
        .iter()
        .map(|p| rancher::new_project(&dst.id, &p.display_name))
        .collect();
    let (n, id, server) = (objects.len(), &dst.id, &at.server);
    writeln!(
        err,
        "--create-missing: creating {n} project(s) on cluster {id} (Rancher at {server}):"
    )?;
    let shown = super::input::render(objects.clone(), super::OutputFormat::Yaml)?;
    write!(err, "{shown}")?;
    let what = format!("create {}.{} in namespace {}", ar.plural, ar.group, dst.id);
    for (source, object) in unmatched.into_iter().zip(objects) {
        let created = api
            .create(&PostParams::default(), &serde_json::from_value(object)?)
            .await
            .map_err(|e| api_error(&what, &at.server, e))?;
        let id = created.metadata.name.unwrap_or_default();
        let name = &source.display_name;
        writeln!(err, "created project {id} {name:?} on cluster {}", dst.id)?;
        pairing.matched.push(Match {
            destination: Project::new(id, name.clone()),
            source,
            how: How::Created,
        });
    }
    Ok(())
}

/// The matched, unmatched and ambiguous projects, for a person (stderr).
fn report(src: &Cluster, dst: &Cluster, pairing: &Pairing) -> String {
    let (s, d) = (&src.id, &dst.id);
    let (s_name, d_name) = (&src.display_name, &dst.display_name);
    let mut out = format!("projects of cluster {s} ({s_name:?}) → cluster {d} ({d_name:?}):\n");
    for m in &pairing.matched {
        let (from, to, how) = (&m.source, &m.destination, m.how.as_str());
        out.push_str(&format!("  matched    {from} → {to} ({how})\n"));
    }
    for p in &pairing.unmatched {
        out.push_str(&format!(
            "  unmatched  {p}: no project of cluster {d} has this name\n"
        ));
    }
    for a in &pairing.ambiguous {
        let case = a.ignoring_case.then_some(" (ignoring case)");
        out.push_str(&format!(
            "  ambiguous  {:?}{}: on cluster {s}: {}; on cluster {d}: {}\n",
            a.name,
            case.unwrap_or_default(),
            rancher::joined(&a.sources),
            rancher::joined(&a.destinations)
        ));
    }
    out
}

/// Why no table is printed.
fn refusal(pairing: &Pairing, create_missing: bool) -> String {
    let mut why = Vec::new();
    if !pairing.ambiguous.is_empty() {
        let n = pairing.ambiguous.len();
        why.push(format!("{n} name(s) held by several projects on one side: rename the projects in Rancher so that each name is held once, or pair them with --map \"SOURCE NAME=DESTINATION NAME\""));
    }
    if !pairing.unmatched.is_empty() {
        let ids: Vec<&str> = pairing.unmatched.iter().map(|p| p.id.as_str()).collect();
        let (n, ids) = (ids.len(), ids.join(", "));
        why.push(format!(
            "{n} source project(s) without a destination project ({ids}): create them on the destination{}, or pair renamed ones with --map \"SOURCE NAME=DESTINATION NAME\"",
            if create_missing { "" } else { " (--create-missing)" }
        ));
    }
    format!("no ConfigMap printed: {}", why.join("; "))
}

/// storkctl's --project-mappings argument.
fn project_mappings(entries: &[(String, String)]) -> String {
    entries
        .iter()
        .map(|(s, d)| format!("{s}={d}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `-o json`: the table (empty when refused) and the pairing.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    mappings: serde_json::Map<String, Value>,
    project_mappings: String,
    #[serde(flatten)]
    pairing: &'a Pairing,
}

fn json_report<'a>(pairing: &'a Pairing, entries: &[(String, String)]) -> JsonReport<'a> {
    JsonReport {
        mappings: entries
            .iter()
            .map(|(s, d)| (s.clone(), Value::from(d.as_str())))
            .collect(),
        project_mappings: project_mappings(entries),
        pairing,
    }
}

fn print_json(pairing: &Pairing, entries: &[(String, String)]) -> Result<()> {
    super::input::print(&super::input::pretty_json(&json_report(pairing, entries))?)
}

/// Every `kind` of management.cattle.io (in `namespace`): its name (the ID) and
/// `spec.displayName`.
async fn list(at: &Connected, kind: &str, namespace: Option<&str>) -> Result<Vec<Named>> {
    let ar = resource(kind);
    let (api, within) = match namespace {
        Some(ns) => (
            Api::<DynamicObject>::namespaced_with(at.client.clone(), ns, &ar),
            format!(" in namespace {ns}"),
        ),
        None => (Api::all_with(at.client.clone(), &ar), String::new()),
    };
    let what = format!("list {}.{}{within}", ar.plural, ar.group);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(&what, &at.server, e))?;
    let mut named = Vec::new();
    for o in list.items {
        let name = o.data["spec"]["displayName"].as_str().unwrap_or_default();
        named.push(Named::new(o.metadata.name.unwrap_or_default(), name));
    }
    Ok(named)
}

/// An API call that failed, as a sentence: what was asked, of which server, and why (the API
/// server's status and message; never a credential).
fn api_error(what: &str, server: &str, e: kube::Error) -> anyhow::Error {
    let e = KubeError::from(e);
    let hint = match e {
        KubeError::Forbidden(_) => "; map-projects needs RBAC permission to do this (docs/operators-guide.md, map-projects)",
        KubeError::NotFound(_) => "; this API server has no Rancher management types: point --kubeconfig/--context at Rancher's management cluster (the `local` cluster Rancher runs on), not at a downstream cluster",
        _ => "",
    };
    let whom = "Rancher's management cluster";
    anyhow!("{}{hint}", e.of_call(what, server, whom))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairing() -> Pairing {
        let src = [
            Project::new("p-s1", "Default"),
            Project::new("p-s2", "Old shop"),
            Project::new("p-s3", "gone"),
            Project::new("p-s4", "Web"),
            Project::new("p-s5", "WEB"),
        ];
        let dst = [
            Project::new("p-d1", "Default"),
            Project::new("p-d2", "New shop"),
            Project::new("p-d3", "web"),
        ];
        pair(&src, &dst, &["Old shop=New shop".parse().unwrap()]).unwrap()
    }

    #[test]
    fn the_report_names_every_project_by_id_and_name() {
        let (src, dst) = (Cluster::new("c-1", "prod"), Cluster::new("c-2", "dr"));
        let r = report(&src, &dst, &pairing());
        assert_eq!(
            r,
            "projects of cluster c-1 (\"prod\") → cluster c-2 (\"dr\"):\n\
             \x20 matched    p-s1 \"Default\" → p-d1 \"Default\" (exact)\n\
             \x20 matched    p-s2 \"Old shop\" → p-d2 \"New shop\" (--map)\n\
             \x20 unmatched  p-s3 \"gone\": no project of cluster c-2 has this name\n\
             \x20 ambiguous  \"web\" (ignoring case): on cluster c-1: p-s4 \"Web\", p-s5 \"WEB\"; on cluster c-2: p-d3 \"web\"\n"
        );
        let why = refusal(&pairing(), false);
        assert!(
            why.contains("1 source project(s) without a destination project (p-s3)")
                && why.contains("--create-missing"),
            "{why}"
        );
        assert!(why.contains("1 name(s) held by several projects"), "{why}");
    }

    #[test]
    fn json_has_the_table_and_every_list() {
        let (src, dst) = ([Project::new("p-a", "shop")], [Project::new("p-x", "Shop")]);
        let p = pair(&src, &dst, &[]).unwrap();
        let entries = rancher::entries(&p.matched, "c-1", "c-2");
        assert_eq!(
            serde_json::to_value(json_report(&p, &entries)).unwrap(),
            json!({
                "mappings": {"p-a": "p-x", "c-1:p-a": "c-2:p-x"},
                "projectMappings": "p-a=p-x,c-1:p-a=c-2:p-x",
                "matched": [{"source": {"id": "p-a", "displayName": "shop"},
                             "destination": {"id": "p-x", "displayName": "Shop"},
                             "by": "ignoring case"}],
                "unmatched": [],
                "ambiguous": [],
            })
        );
        // Refused: the lists, and no table.
        let refused = serde_json::to_value(json_report(&pairing(), &[])).unwrap();
        assert_eq!(refused["mappings"], json!({}));
        assert_eq!(refused["projectMappings"], "");
        let gone = json!([{"id": "p-s3", "displayName": "gone"}]);
        assert_eq!(refused["unmatched"], gone);
        let sources = refused["ambiguous"][0]["sources"].as_array().unwrap();
        assert_eq!(sources.len(), 2);
    }

    #[test]
    fn the_destination_side_is_the_source_side_unless_another_is_named() {
        use clap::{Args as _, FromArgMatches};
        let parse = |extra: &[&str]| {
            let argv = "x --source a --destination b --kubeconfig k --context c".split(' ');
            let command = Args::augment_args(clap::Command::new("x"));
            let matches = command.get_matches_from(argv.chain(extra.iter().copied()));
            Args::from_arg_matches(&matches).unwrap().destination_side()
        };
        assert!(parse(&[]).is_none());
        let side = |kubeconfig: &str, context: Option<&str>| ClusterArgs {
            kubeconfig: Some(kubeconfig.into()),
            context: context.map(Into::into),
        };
        let d = parse(&["--destination-context", "dc"]);
        assert_eq!(d, Some(side("k", Some("dc"))));
        let d = parse(&["--destination-kubeconfig", "dk"]);
        assert_eq!(d, Some(side("dk", None)));
    }
}
