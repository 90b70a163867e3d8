//! Reading the files named on the command line (`-` is stdin), and printing what a command
//! prints.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::manifest;
use crate::mapping::objects::Mappings;

/// Reads a file, or stdin for `-`.
pub fn read(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// A table read for a command: refused when it does not fit this cluster (`this`, when known:
/// reversed, or made for another cluster), its warnings said on stderr.
pub fn checked_mappings(mappings: Mappings, this: Option<&str>) -> Result<Mappings> {
    if let Some(this) = this {
        mappings.table.check_cluster(this)?;
    }
    for w in mappings.table.warnings() {
        eprintln!("warning: {w}");
    }
    Ok(mappings)
}

/// Refuses stdin (`-`) named more than once.
pub fn stdin_once(paths: &[PathBuf]) -> Result<()> {
    if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        bail!("stdin (-) can be read only once");
    }
    Ok(())
}

/// Every object of every file, in order (lists expanded; stdin named once at most), refusing
/// input that holds none: an empty file or pipe (a command upstream that failed) is an error
/// naming what was expected (`expected`: "objects", "ClusterPair"), never a quiet success.
pub fn read_some_objects(paths: &[PathBuf], expected: &str) -> Result<Vec<Value>> {
    stdin_once(paths)?;
    let mut objects = Vec::new();
    for path in paths {
        let text = read(path)?;
        objects.extend(
            manifest::parse_objects(&text)
                .with_context(|| format!("parsing {}", path.display()))?,
        );
    }
    if objects.is_empty() {
        bail!(
            "no {expected} in input: {} held no Kubernetes object (YAML or JSON)",
            names(paths)
        );
    }
    Ok(objects)
}

/// The files named, for messages (`-` is stdin).
pub fn names(paths: &[PathBuf]) -> String {
    let name = |p: &PathBuf| match p.as_os_str() == "-" {
        true => "stdin".to_string(),
        false => p.display().to_string(),
    };
    paths.iter().map(name).collect::<Vec<_>>().join(", ")
}

pub fn render(objects: Vec<Value>, format: super::OutputFormat) -> Result<String> {
    Ok(match format {
        super::OutputFormat::Yaml => manifest::to_yaml_stream(&objects)?,
        super::OutputFormat::Json => pretty_json(&match <[Value; 1]>::try_from(objects) {
            Ok([object]) => object,
            Err(objects) => {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objects})
            }
        })?,
    })
}

/// Writes `text` on stdout, flushed (a closed pipe is an error, not a panic).
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    Ok(out.flush()?)
}

/// `value` as indented JSON, ending with a newline: how every command prints JSON.
pub fn pretty_json(value: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}
