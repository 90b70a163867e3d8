//! `rancher-remap rewrite`: previews the webhook's rewrite of manifests, offline.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{input, OutputFormat};
use crate::mapping::objects::Mappings;
use crate::rewrite::{describe, rewrite, Options, UnmappedAction};
use crate::source::mappings_file::mappings_from_file_text;

/// Preview the rewrite of manifests (every object counts as migrated).
///
/// Prints the rewritten objects on stdout and a summary of rewrites and unmapped values on
/// stderr. Exits 1 on invalid mappings or input, or when --unmapped=deny refuses an object
/// (then nothing is printed on stdout).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub mappings: MappingArgs,

    /// What to do with a project ID that has no mapping: drop removes the label or annotation
    /// (selectors are never shortened), keep leaves it, deny refuses the object.
    #[arg(long, value_enum, default_value_t)]
    pub unmapped: super::Unmapped,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: OutputFormat,

    /// Manifest files (YAML, multi-document, or JSON; a List is expanded); `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

/// Where the project mappings come from (exactly one).
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct MappingArgs {
    /// Mappings in storkctl's --project-mappings syntax, e.g. `p-a=p-b,c-1:p-a=c-2:p-b`.
    #[arg(long, value_name = "STR")]
    pub project_mappings: Option<String>,

    /// A file holding a mapping ConfigMap, a ClusterPair (YAML or JSON), or plain src=dst text.
    #[arg(long, value_name = "PATH")]
    pub mappings_file: Option<PathBuf>,
}

impl MappingArgs {
    /// Loads and checks the mappings.
    pub fn load(&self) -> Result<Mappings> {
        let mappings = match (&self.project_mappings, &self.mappings_file) {
            (Some(text), _) => Mappings::from_text(text)?,
            (None, Some(path)) => mappings_from_file_text(&input::read(path)?)
                .with_context(|| format!("mappings file {}", path.display()))?,
            (None, None) => anyhow::bail!("give --project-mappings or --mappings-file"),
        };
        for w in mappings.table.warnings() {
            eprintln!("warning: {w}");
        }
        Ok(mappings)
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mappings = args.mappings.load()?;
    let objects = input::read_some_objects(&args.files, "objects")?;
    let options = Options {
        unmapped: args.unmapped.into(),
        migrated: true,
    };

    let mut output = Vec::with_capacity(objects.len());
    let mut denials = Vec::new();
    let (mut rewrites, mut changed, mut unmapped, mut removed) = (0, 0, 0, 0);
    let mut err = std::io::stderr().lock();
    for obj in objects {
        let outcome = rewrite(&obj, &mappings.table, &options);
        let name = describe(&obj);
        for r in &outcome.rewrites {
            writeln!(err, "{name}: {}: {} -> {}", r.path(), r.from, r.to)?;
        }
        for w in outcome.warnings(&name) {
            writeln!(err, "warning: {w}")?;
        }
        rewrites += outcome.rewrites.len();
        unmapped += outcome.unmapped.len();
        removed += outcome
            .unmapped
            .iter()
            .filter(|u| u.action == UnmappedAction::Removed)
            .count();
        changed += usize::from(!outcome.patch.is_empty());
        if let Some(reason) = outcome.denial(&name) {
            denials.push(reason);
            continue;
        }
        output.push(outcome.apply(&obj).context("applying the patch")?);
    }
    if !denials.is_empty() {
        for d in &denials {
            writeln!(err, "denied: {d}")?;
        }
        return Ok(ExitCode::FAILURE);
    }
    writeln!(
        err,
        "{rewrites} value(s) rewritten in {changed} of {} object(s); {unmapped} unmapped ({removed} removed)",
        output.len()
    )?;
    let text = input::render(output, args.output)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
