//! `rancher-remap check`: the `/validate` checks offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{input, ReportFormat};
use crate::rewrite::describe;
use crate::source::mappings_file::looks_like_manifest;
use crate::validate::{check, check_mapping_text, is_validated, Report};

/// Check ClusterPairs, mapping ConfigMaps and mapping text as the validating webhook and the
/// server would (the rules: docs/behaviour.md).
///
/// A file that is not a manifest is read as mapping text (`src=dst` entries, as
/// --project-mappings and a plain mappings file hold them). `-o table` prints every finding as
/// `FILE: WHAT: error|warning: FIELD.PATH: message`, and `ok` for objects without findings;
/// `-o json` prints `{"checked": [{"file", "object", "errors": [{"path", "message"}],
/// "warnings": [...]}]}`. Other objects are skipped (said on stderr). Exit status 1 when any
/// error is found, or when no file holds anything to check.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to check (YAML or JSON, several documents or a List each; or mapping text); `-` is
    /// stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// The Rancher ID of the destination cluster the mappings are for (as `derive` prints it):
    /// a table whose sources name it (reversed) or whose destinations name another cluster is
    /// refused, as the server there refuses it. Applies to mapping ConfigMaps and mapping text;
    /// ClusterPairs are not checked against it (the destination holds a reversed pair of its
    /// own).
    #[arg(long, env = "RANCHER_REMAP_CLUSTER_ID", value_name = "ID", value_parser = super::parse_cluster_id)]
    pub cluster_id: Option<String>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: ReportFormat,
}

/// What was checked in one file, and what was found (`-o json`'s shape).
#[derive(serde::Serialize)]
struct Checked {
    file: String,
    object: String,
    #[serde(flatten)]
    report: Report,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cluster_id = super::known_cluster_id(&args.cluster_id);
    input::stdin_once(&args.files)?;
    let mut checked = Vec::new();
    for file in &args.files {
        let name = file.display().to_string();
        let text = input::read(file)?;
        if text.trim().is_empty() {
            let file = input::names(std::slice::from_ref(file));
            anyhow::bail!("{file} is empty: expected a ClusterPair, a mapping ConfigMap or src=dst mapping text");
        }
        let mut found = |object: String, report| {
            checked.push(Checked {
                file: name.clone(),
                object,
                report,
            })
        };
        if !looks_like_manifest(&text) {
            found("mappings".into(), check_mapping_text(&text, cluster_id));
            continue;
        }
        let objects =
            crate::manifest::parse_objects(&text).with_context(|| format!("parsing {name}"))?;
        for obj in objects {
            let object = describe(&obj);
            if !is_validated(&obj) {
                eprintln!("{name}: {object}: skipped (not a ClusterPair or a ConfigMap labelled rancher-remap.io/mappings)");
                continue;
            }
            found(object, check(&obj, now, cluster_id));
        }
    }
    if checked.is_empty() {
        anyhow::bail!("nothing to check in the files given (no ClusterPair, mapping ConfigMap or mapping text)");
    }
    let out = match args.output {
        ReportFormat::Table => table(&checked),
        ReportFormat::Json => input::pretty_json(&serde_json::json!({ "checked": checked }))?,
    };
    print!("{out}");
    let errors: usize = checked.iter().map(|c| c.report.errors.len()).sum();
    let warnings: usize = checked.iter().map(|c| c.report.warnings.len()).sum();
    eprintln!(
        "{} checked: {errors} errors, {warnings} warnings",
        checked.len()
    );
    Ok(ExitCode::from(u8::from(errors > 0)))
}

fn table(checked: &[Checked]) -> String {
    let mut out = String::new();
    for c in checked {
        let (errors, warnings) = (&c.report.errors, &c.report.warnings);
        let said = errors.iter().map(|f| format!("error: {f}"));
        let said = said.chain(warnings.iter().map(|f| format!("warning: {f}")));
        let ok = (errors.is_empty() && warnings.is_empty()).then(|| "ok".to_string());
        for s in said.chain(ok) {
            out.push_str(&format!("{}: {}: {s}\n", c.file, c.object));
        }
    }
    out
}
