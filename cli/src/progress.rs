//! How `bulkmock export` shows its work: progress bars on a terminal, plain
//! lines otherwise, a JSON event log with `--json`. All three are observers of
//! the client's events.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bulkmock_client::{Event, Observer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One JSON object per line on stdout; byte counts are left out (too many).
pub fn json() -> Observer {
    Arc::new(|event: &Event| {
        if matches!(event, Event::FileBytes { .. }) {
            return;
        }
        if let Ok(line) = serde_json::to_string(event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    })
}

/// A readable line per event on stderr, for logs and pipes.
pub fn plain() -> Observer {
    Arc::new(|event: &Event| {
        if let Some(line) = describe(event) {
            eprintln!("{line}");
        }
    })
}

/// A progress bar on stderr: bytes, rate, files done; other events printed above it.
pub fn bars() -> Observer {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {bytes:>10} {binary_bytes_per_sec:>12}  {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message("starting");
    let files_known = AtomicU64::new(0);
    let files_done = AtomicU64::new(0);
    Arc::new(move |event: &Event| match event {
        Event::FileBytes { bytes, .. } => bar.inc(*bytes),
        Event::InProgress { progress, .. } => {
            bar.set_message(format!("waiting for the server: {}", progress.as_deref().unwrap_or("in progress")))
        }
        Event::Manifest { new_files, .. } => {
            let known = files_known.fetch_add(*new_files as u64, Ordering::Relaxed) + *new_files as u64;
            bar.set_message(format!("{} of {known} files", files_done.load(Ordering::Relaxed)));
        }
        Event::FileDone { .. } => {
            let done = files_done.fetch_add(1, Ordering::Relaxed) + 1;
            bar.set_message(format!("{done} of {} files", files_known.load(Ordering::Relaxed)));
        }
        Event::Deleted { .. } | Event::DeleteFailed { .. } => {
            if let Some(line) = describe(event) {
                bar.println(line);
            }
            bar.finish_and_clear()
        }
        other => {
            if let Some(line) = describe(other) {
                bar.println(line);
            }
        }
    })
}

/// The plain-text form of an event (none for byte counts).
fn describe(event: &Event) -> Option<String> {
    Some(match event {
        Event::Token { renewal: false, granted_scope } => {
            format!("token granted ({})", granted_scope.as_deref().unwrap_or("scope as asked"))
        }
        Event::Token { renewal: true, .. } => "token renewed".into(),
        Event::ScopeNarrowed { requested, granted } => format!("warning: asked for {requested:?}, granted {granted:?}"),
        Event::TypeFilterUnsupported { filter, parameter } => {
            format!(
                "warning: the server does not list the search parameter {parameter:?} used by _typeFilter {filter:?}"
            )
        }
        Event::KickedOff { status_url } => format!("export accepted, status at {status_url}"),
        Event::InProgress { progress, wait_ms } => format!(
            "in progress: {} (next poll in {:.1} s)",
            progress.as_deref().unwrap_or("no progress given"),
            *wait_ms as f64 / 1000.0
        ),
        Event::Manifest { url, new_files, complete } => {
            format!("manifest{} from {url}: {new_files} files", if *complete { "" } else { " page" })
        }
        Event::UrlsRenewed { url } => format!("file URLs expired; fresh ones from {url}"),
        Event::FileStarted { .. } | Event::FileBytes { .. } => return None,
        Event::FileDone { file, resource_type, resources, bytes } => {
            format!("file {file} done: {resources} {} ({bytes} bytes)", resource_type.as_deref().unwrap_or("resources"))
        }
        Event::Retry { url, attempt, wait_ms, reason } => {
            format!("retry {attempt} of {url} in {:.1} s: {reason}", *wait_ms as f64 / 1000.0)
        }
        Event::Deleted { status_url } => format!("job deleted on the server ({status_url})"),
        Event::Adapted { note } => format!("note: {note}"),
        Event::DeleteFailed { status_url, reason } => {
            format!("warning: the export succeeded, but deleting the job failed ({status_url}): {reason}")
        }
    })
}
