//! `--mappings-file`: a file followed for changes by polling its content.

use std::path::PathBuf;
use std::time::Duration;

use super::mappings_file::mappings_from_file_text;
use super::ReadError;
use crate::content_poll::ContentPoll;
use crate::mapping::objects::Mappings;

/// Follows a mappings file: whenever its content changes (an edit, or kubelet's atomic `..data`
/// symlink swap of a mounted ConfigMap — reading through the path follows the new link), the new
/// content is parsed and handed to `on_load`, good or bad (why not, as text). The first read
/// happens at once; an error then is handed over too, later ones are not (see [`ContentPoll`]).
pub async fn follow_file(
    path: PathBuf,
    interval: Duration,
    on_load: impl Fn(Result<Mappings, String>) + Send,
) {
    let mut poll = ContentPoll::new(interval, None);
    let mut first = true;
    loop {
        let read = poll.changed(|| tokio::fs::read(&path)).await;
        let bytes = match (read, std::mem::take(&mut first)) {
            (Ok(bytes), _) => bytes.clone(),
            (Err(why), true) => {
                let path = path.clone();
                on_load(Err(ReadError::File { path, why }.to_string()));
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
        match built {
            Ok(result) => on_load(result),
            Err(_) => {
                tracing::error!(path = %path.display(), "internal error while building the mapping table; keeping the table in force")
            }
        }
    }
}
