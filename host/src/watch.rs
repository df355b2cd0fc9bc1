//! Picks up policy changes without a restart. File system events (debounced),
//! the polling timer and SIGHUP are only hints: each wakes one reloader thread,
//! which runs [`Registry::begin_reload`], and that rescans the directory and compares
//! content hashes. Loads run on their own threads; reloads never run on the request path.

use crate::config::ReloadSettings;
use crate::registry::{Registry, ReloadReport, Trigger};
use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polling interval when watching is off (or fails) and none is configured.
const DEFAULT_POLL: Duration = Duration::from_secs(2);

/// Wakes the reloader thread; cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    tx: mpsc::Sender<Trigger>,
}

impl Reloader {
    /// Asks for a reload pass; passes asked for while one runs are merged.
    pub fn hint(&self, trigger: Trigger) {
        self.tx.send(trigger).ok();
    }
}

/// The running watcher, timer and reloader; dropping it stops the watcher.
pub struct Watching {
    /// Wakes the reloader.
    pub reloader: Reloader,
    /// Whether file system events are being watched.
    pub watching: bool,
    /// The polling interval, if polling.
    pub poll: Option<Duration>,
    _debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
}

/// Starts the reloader thread, the directory watcher (if enabled) and the
/// polling timer (if configured, or if watching is off or fails to start).
pub fn start(registry: Arc<Registry>, settings: &ReloadSettings) -> Watching {
    let (tx, rx) = mpsc::channel();
    let reloader = Reloader { tx };
    let debouncer = if settings.watch {
        match watch_dir(&registry, settings, reloader.clone()) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(dir = %registry.dir().display(), error = %e, "cannot watch the policy directory; polling instead");
                None
            }
        }
    } else {
        None
    };
    let poll = match (settings.poll_interval_ms, debouncer.is_some()) {
        (0, true) => None,
        (0, false) => Some(DEFAULT_POLL),
        (ms, _) => Some(Duration::from_millis(ms)),
    };
    tracing::info!(dir = %registry.dir().display(), watching = debouncer.is_some(), poll_ms = poll.map(|p| p.as_millis() as u64), settle_ms = registry.settle().as_millis() as u64, "hot reload on");
    let retry = registry.settle().max(Duration::from_millis(50));
    std::thread::Builder::new()
        .name("policy-reload".into())
        .spawn(move || reload_loop(&registry, &rx, poll, retry))
        .ok();
    Watching {
        reloader,
        watching: debouncer.is_some(),
        poll,
        _debouncer: debouncer,
    }
}

fn watch_dir(
    registry: &Registry,
    settings: &ReloadSettings,
    reloader: Reloader,
) -> anyhow::Result<Debouncer<RecommendedWatcher, RecommendedCache>> {
    let timeout = Duration::from_millis(settings.debounce_ms.max(1));
    let mut debouncer = new_debouncer(timeout, None, move |result: DebounceEventResult| {
        match result {
            // Opens and reads (the reloader's own among them) change nothing.
            Ok(events) if events.iter().any(|e| is_change(&e.kind)) => {
                reloader.hint(Trigger::Watch)
            }
            Ok(_) => {}
            Err(errors) => {
                for e in &errors {
                    tracing::warn!(error = %e, "policy directory watch error; rescanning");
                }
                reloader.hint(Trigger::Watch);
            }
        }
    })?;
    // Not recursive: a ConfigMap's `..data` swap is a rename in the directory itself.
    debouncer.watch(registry.dir(), RecursiveMode::NonRecursive)?;
    Ok(debouncer)
}

/// Whether an event may mean changed content.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn reload_loop(
    registry: &Arc<Registry>,
    rx: &mpsc::Receiver<Trigger>,
    poll: Option<Duration>,
    retry: Duration,
) {
    let mut next_poll = poll.map(|p| Instant::now() + p);
    let mut retry_at: Option<Instant> = None;
    loop {
        let wake = match (next_poll, retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let received = match wake {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let trigger = match received {
            Ok(trigger) => trigger,
            Err(RecvTimeoutError::Timeout) if retry_at.is_some_and(|r| r <= Instant::now()) => {
                Trigger::Retry
            }
            Err(RecvTimeoutError::Timeout) => Trigger::Poll,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Hints that arrived meanwhile are served by this one pass.
        while rx.try_recv().is_ok() {}
        let pass = registry.begin_reload(trigger);
        retry_at = (!pass.pending().is_empty()).then(|| Instant::now() + retry);
        // Loads swap themselves in; the next hint needs no wait for them.
        if pass.is_done() {
            log_pass(trigger, &pass.finish());
        } else {
            let finishing = std::thread::Builder::new().name("policy-reload-pass".into());
            if let Err(e) = finishing.spawn(move || log_pass(trigger, &pass.finish())) {
                tracing::warn!(error = %e, "cannot start a thread to report a reload pass");
            }
        }
        if let Some(p) = poll {
            next_poll = Some(Instant::now() + p);
        }
    }
}

fn log_pass(trigger: Trigger, report: &ReloadReport) {
    if report.changed() || !report.failed.is_empty() {
        tracing::info!(?trigger, loaded = ?report.loaded, removed = ?report.removed, failed = report.failed.len(), superseded = ?report.superseded, pending = ?report.pending, elapsed_ms = report.elapsed_ms, "policy reload");
    } else {
        tracing::debug!(?trigger, superseded = ?report.superseded, pending = ?report.pending, "policy reload: nothing changed");
    }
}

/// Reloads on every SIGHUP, until the process exits.
pub fn spawn_sighup(reloader: Reloader) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading policies");
            reloader.hint(Trigger::Signal);
        }
    });
    #[cfg(not(unix))]
    drop(reloader);
}
