//! Where a domain's upstream list comes from: the config itself (`static`) or an
//! `upstreams-file` that is polled for changes and written atomically by admin writes.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use buckler_config::{Config, DomainConfig, UpstreamSpec, UpstreamWatcher};

use super::{ChangeError, Control, SetupError};

/// How often an `upstreams-file` is read for changes.
const FILE_POLL: Duration = Duration::from_millis(250);

/// The list a domain starts with (or is reloaded with).
pub(super) fn initial_upstreams(
    settings: &DomainConfig,
    config: &Config,
) -> Result<Vec<UpstreamSpec>, SetupError> {
    let error = |reason: String| SetupError::Upstreams {
        domain: settings.domain_name.clone(),
        reason,
    };
    match &settings.upstream_watcher {
        UpstreamWatcher::Static { upstreams } => Ok(upstreams.clone()),
        UpstreamWatcher::File { path } => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                error(format!(
                    "cannot read upstreams-file {}: {e}",
                    path.display()
                ))
            })?;
            buckler_config::parse_upstreams(&text, &path.display().to_string(), &config.lambda)
                .map_err(|e| error(e.to_string()))
        }
        UpstreamWatcher::Etcd { .. } => Err(error(
            "the etcd upstream watcher is not supported by this build yet".to_owned(),
        )),
    }
}

/// Polls an `upstreams-file` for content changes. Polling the path (not an inode watch) sees
/// editors' write-to-temp-then-rename saves as well as in-place writes.
pub(super) async fn watch_file(control: Weak<Control>, domain: String, path: PathBuf) {
    let mut last = std::fs::read(&path).ok();
    loop {
        tokio::time::sleep(FILE_POLL).await;
        let Some(control) = control.upgrade() else {
            return;
        };
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if last.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        last = Some(bytes.clone());
        let text = String::from_utf8_lossy(&bytes);
        let lambda = control.lambda_defaults();
        match buckler_config::parse_upstreams(&text, &path.display().to_string(), &lambda) {
            Ok(specs) => {
                control.count_reload(true);
                if let Err(error) = control.replace_upstreams(&domain, specs) {
                    tracing::error!(file = %path.display(), "upstreams-file change not applied: {error}");
                }
            }
            Err(errors) => {
                control.count_reload(false);
                for error in &errors.0 {
                    tracing::error!(file = %path.display(), "upstreams-file change rejected, previous set kept: {error}");
                }
            }
        }
    }
}

/// Writes `text` next to `path` and renames it over, so watchers never see half a file.
pub(super) fn write_atomically(path: &Path, text: &str) -> Result<(), ChangeError> {
    let error = |e: std::io::Error| ChangeError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temp, text).map_err(error)?;
    std::fs::rename(&temp, path).map_err(error)
}
