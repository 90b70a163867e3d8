//! `rancher-remap rewrite`: previews the webhook's rewrite of manifests, offline.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::{input, OutputFormat};
use crate::mapping::objects::Mappings;
use crate::rewrite::{
    decide_object, describe, display_pointer, Action, MutateSettings, UnmappedAction,
};
use crate::source::mappings_file::mappings_from_file_text;
use crate::source::ReadError;

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
    pub unmapped: crate::rewrite::UnmappedPolicy,

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

pub fn run(args: Args) -> Result<ExitCode> {
    let m = &args.mappings;
    let mappings = match (&m.project_mappings, &m.mappings_file) {
        (Some(text), _) => Mappings::from_text(text)?,
        (None, Some(path)) => mappings_from_file_text(&input::read(path)?)
            .map_err(|e| ReadError::bad_file(path, e))?,
        (None, None) => anyhow::bail!("give --project-mappings or --mappings-file"),
    };
    let mappings = input::checked_mappings(mappings, None)?;
    let objects = input::read_some_objects(&args.files, "objects")?;
    let settings = MutateSettings {
        unmapped: args.unmapped,
        ..MutateSettings::default()
    };

    let mut output = Vec::with_capacity(objects.len());
    let mut denials = Vec::new();
    let (mut rewrites, mut changed, mut unmapped, mut removed) = (0, 0, 0, 0);
    let mut err = std::io::stderr().lock();
    for obj in &objects {
        // Every object counts as migrated (docs/behaviour.md): an input to the one rule (with
        // no cluster ID, no Namespace is this cluster's own, so its claim changes nothing).
        let decision = decide_object(obj, false, true, &mappings, &settings);
        let name = describe(obj);
        for r in decision.rewrites() {
            let (at, from, to) = (display_pointer(r.pointer), r.from, r.to);
            writeln!(err, "{name}: {at}: {from} -> {to}")?;
            rewrites += 1;
        }
        for w in &decision.warnings {
            writeln!(err, "warning: {w}")?;
        }
        for u in decision.unmapped() {
            unmapped += 1;
            removed += usize::from(u.action == UnmappedAction::Removed);
        }
        changed += usize::from(decision.action == Action::Patch);
        if let Some(reason) = decision.denial {
            denials.push(reason);
            continue;
        }
        output.push(decision.apply(obj).context("applying the patch")?);
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
    input::print(&input::render(output, args.output)?)?;
    Ok(ExitCode::SUCCESS)
}
