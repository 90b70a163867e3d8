//! `--mappings-file`: a file followed for changes by polling its content.

use std::path::PathBuf;
use std::time::Duration;

use super::mappings_file::{mappings_from_file_text, MappingsFileError};
use crate::content_poll::ContentPoll;
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
/// content is parsed and handed to `on_load`, good or bad. The first read happens at once; an
/// error then is handed over too, later ones are not (see [`ContentPoll`]).
pub async fn follow_file(
    path: PathBuf,
    interval: Duration,
    on_load: impl Fn(Result<Mappings, LoadError>) + Send,
) {
    let mut poll = ContentPoll::new(interval, None);
    let mut first = true;
    loop {
        let read = poll.changed(|| tokio::fs::read(&path)).await;
        let bytes = match (read, std::mem::take(&mut first)) {
            (Ok(bytes), _) => bytes.clone(),
            (Err(source), true) => {
                on_load(Err(LoadError::Read {
                    path: path.display().to_string(),
                    source,
                }));
                continue;
            }
            (Err(source), false) => {
                // A missing file mid-swap, a deleted file, or the same error again: keep the
                // table in force, say it once.
                tracing::debug!(path = %path.display(), error = %source, "mappings file unreadable; keeping the table in force");
                continue;
            }
        };
        // Building a large table takes tens of milliseconds: off the request threads.
        let built = tokio::task::spawn_blocking(move || {
            std::str::from_utf8(&bytes)
                .map_err(|_| {
                    LoadError::Invalid(MappingsFileError::Unsupported(
                        "the mappings file is not UTF-8".into(),
                    ))
                })
                .and_then(|text| Ok(mappings_from_file_text(text)?))
        })
        .await;
        match built {
            Ok(result) => on_load(result),
            Err(_) => {
                tracing::error!(path = %path.display(), "internal error while building the mapping table; keeping the table in force")
            }
        }
    }
}
