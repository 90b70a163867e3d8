//! `--mappings-file`: a file followed for changes by polling its content.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::mappings_file::mappings_from_file_text;
use super::ReadError;
use crate::content_poll::ContentPoll;
use crate::live::LiveMappings;

/// Follows a mappings file: whenever its content changes (an edit, or kubelet's atomic `..data`
/// symlink swap of a mounted ConfigMap — reading through the path follows the new link), the new
/// content is parsed and offered to `live`, good or bad (refusals are logged and counted by
/// `offer`). The first read happens at once; an error then is offered too, later ones are not
/// (see [`ContentPoll`]).
pub async fn follow_file(path: PathBuf, interval: Duration, live: Arc<LiveMappings>) {
    let origin = path.display().to_string();
    let mut poll = ContentPoll::new(interval, None);
    let mut first = true;
    loop {
        let read = poll.changed(|| tokio::fs::read(&path)).await;
        let bytes = match (read, std::mem::take(&mut first)) {
            (Ok(bytes), _) => bytes.clone(),
            (Err(why), true) => {
                let path = path.clone();
                let _ = live.offer::<ReadError>(&origin, Err(ReadError::File { path, why }));
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
            let text = std::str::from_utf8(&bytes).map_err(|_| "the mappings file is not UTF-8")?;
            mappings_from_file_text(text).map_err(|e| e.to_string())
        })
        .await;
        let Ok(result) = built else {
            tracing::error!(path = %path.display(), "internal error while building the mapping table; keeping the table in force");
            continue;
        };
        let _ = live.offer(&origin, result);
    }
}
