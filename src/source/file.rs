//! `--mappings-file`: a file followed for changes by polling its content.

use std::path::PathBuf;
use std::time::Duration;

use super::mappings_file::{mappings_from_file_text, MappingsFileError};
use crate::mapping::objects::Mappings;

/// Why a table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] MappingsFileError),
}

/// Follows a mappings file: whenever its content changes (an edit, or kubelet's atomic `..data`
/// symlink swap of a mounted ConfigMap — reading through the path follows the new link), the new
/// content is parsed and handed to `on_load`, good or bad. The first read happens at once.
/// Polling the content keeps this correct on every filesystem and volume type.
pub async fn follow_file(
    path: PathBuf,
    interval: Duration,
    on_load: impl Fn(Result<Mappings, LoadError>) + Send,
) {
    let mut last = Seen::Nothing;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(source) => {
                if last == Seen::Nothing {
                    on_load(Err(LoadError::Read {
                        path: path.display().to_string(),
                        source,
                    }));
                    last = Seen::Unreadable;
                } else {
                    // A missing file mid-swap, a deleted file, or the same error again: keep
                    // the table in force, say it once.
                    tracing::debug!(path = %path.display(), error = %source, "mappings file unreadable; keeping the table in force");
                }
                continue;
            }
        };
        if matches!(&last, Seen::Content(c) if *c == bytes) {
            continue;
        }
        // Building a large table takes tens of milliseconds: off the request threads.
        let built = tokio::task::spawn_blocking(move || {
            let result = std::str::from_utf8(&bytes)
                .map_err(|_| {
                    LoadError::Invalid(MappingsFileError::Unsupported(
                        "the mappings file is not UTF-8".into(),
                    ))
                })
                .and_then(|text| Ok(mappings_from_file_text(text)?));
            (bytes, result)
        })
        .await;
        let Ok((bytes, result)) = built else {
            tracing::error!(path = %path.display(), "internal error while building the mapping table; keeping the table in force");
            continue;
        };
        on_load(result);
        last = Seen::Content(bytes);
    }
}

/// What [`follow_file`] last read: nothing yet, an error (reported once), or this content
/// (loaded, or refused; either way not read again until it changes). Distinct from empty
/// content, which is a file to load (and refuse).
#[derive(PartialEq, Eq)]
enum Seen {
    Nothing,
    Unreadable,
    Content(Vec<u8>),
}
