//! Data that changes over time, deterministically.
//!
//! A data set has a *revision*. Revision 0 is the population as generated;
//! each later revision `k` updates some resources, adds patients (with all
//! their resources), deletes some leaf resources and changes Group
//! membership. Every revision is a pure function of (seed, population size,
//! revision, [`Timeline`]): the expected state after any sequence of exports
//! is computable with [`DataSource::at_revision`].
//!
//! Times: revision `k` has the time `T_k = epoch + k × step`; every change
//! of revision `k` carries `meta.lastUpdated` in `(T_{k-1}, T_k]` (exactly
//! `T_k`), and every resource of revision `r` has `lastUpdated <= T_r`.
//!
//! **The transactionTime rule**: a job snapshots the revision `r` current at
//! kick-off and its manifest's `transactionTime` is `T_r`. Nothing in the
//! job's output changed after `T_r`, and every later change carries
//! `lastUpdated > T_r`, so `_since = transactionTime` on the next export
//! misses nothing and repeats nothing.
//!
//! [`Revisions`] holds a server's current revision: advanced on demand
//! (admin API, [`MockServer`](crate::MockServer) methods), every N seconds
//! (computed lazily from the elapsed time, no timer), or after every
//! completed export.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::DataSource;

/// The end of revision 0's data (2026-02-01T00:00:00Z): every generated
/// `meta.lastUpdated` of revision 0 is before it, so revision times never
/// start earlier.
pub const REVISION0_END: i64 = 1_769_904_000;

/// When revisions happen: `T_k = epoch + k × step` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// `T_0`, the time of revision 0.
    pub epoch: i64,
    /// Seconds between two revisions (at least 1).
    pub step: i64,
}

impl Default for Timeline {
    /// The fixed timeline of a data set built outside a server: `T_0` = [`REVISION0_END`], one second apart.
    fn default() -> Self {
        Timeline { epoch: REVISION0_END, step: 1 }
    }
}

impl Timeline {
    /// A timeline starting at `epoch`, clamped to [`REVISION0_END`] so
    /// revision 0's data is never after `T_0`.
    pub fn new(epoch: i64, step: i64) -> Self {
        Timeline { epoch: epoch.max(REVISION0_END), step: step.max(1) }
    }

    /// `T_k`.
    pub fn time(&self, revision: u64) -> i64 {
        self.epoch + self.step * revision as i64
    }
}

/// How a server's revision advances by itself (besides explicit advances).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoAdvance {
    /// Only on demand.
    #[default]
    Never,
    /// One revision every this long since the server started.
    Every(Duration),
    /// One revision after every export job's work is done.
    AfterExport,
}

/// Revision settings of a server ([`ServerConfig::revisions`](crate::ServerConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevisionConfig {
    /// `T_0`, Unix seconds; `None`: the server's clock at start (with its offset).
    pub epoch: Option<i64>,
    /// Automatic advances. With [`AutoAdvance::Every`], revisions are that
    /// many seconds apart in time too, so `T_k` follows the clock.
    pub auto: AutoAdvance,
}

/// A server's current revision and the views it has handed out.
pub struct Revisions {
    base: Arc<dyn DataSource>,
    auto: AutoAdvance,
    inner: Mutex<Current>,
}

struct Current {
    /// Since when [`AutoAdvance::Every`] counts (server start or the last reset).
    started: Instant,
    /// Revisions added by explicit advances (and after exports).
    manual: u64,
    /// The view of the current revision.
    view: Arc<dyn DataSource>,
}

impl Revisions {
    /// Starts at revision 0 of `base` (the view at revision 0 is `base` itself).
    pub fn new(base: Arc<dyn DataSource>, auto: AutoAdvance) -> Self {
        let view = Arc::clone(&base);
        Revisions { base, auto, inner: Mutex::new(Current { started: Instant::now(), manual: 0, view }) }
    }

    /// Revisions added by the clock since `started`.
    fn timed(&self, started: Instant) -> u64 {
        match self.auto {
            AutoAdvance::Every(every) if !every.is_zero() => {
                (started.elapsed().as_nanos() / every.as_nanos().max(1)) as u64
            }
            _ => 0,
        }
    }

    /// The current revision's view: what a kick-off snapshots.
    pub fn current(&self) -> Arc<dyn DataSource> {
        let mut inner = self.inner.lock().expect("revisions");
        let revision = inner.manual + self.timed(inner.started);
        if inner.view.revision() != revision
            && let Some(view) = self.base.at_revision(revision)
        {
            inner.view = view;
        }
        Arc::clone(&inner.view)
    }

    /// The current revision number.
    pub fn revision(&self) -> u64 {
        self.current().revision()
    }

    /// Moves to revision `to` (forward only); returns the new revision, or
    /// why not (a source that does not change, or a revision in the past).
    pub fn set(&self, to: u64) -> Result<u64, String> {
        if self.base.revision_time().is_none() {
            return Err("this data set does not change over time: revisions need the synthetic population \
                        (not --data)"
                .into());
        }
        let mut inner = self.inner.lock().expect("revisions");
        let timed = self.timed(inner.started);
        let now = inner.manual + timed;
        if to < now {
            return Err(format!("revision {to} is in the past: the data set is at revision {now}"));
        }
        inner.manual = to - timed;
        if let Some(view) = self.base.at_revision(to) {
            inner.view = view;
        }
        Ok(to)
    }

    /// Advances by one revision; returns the new revision.
    pub fn advance(&self) -> Result<u64, String> {
        self.set(self.revision() + 1)
    }

    /// Back to revision 0 (admin reset); automatic advances count from now.
    pub fn reset(&self) {
        let mut inner = self.inner.lock().expect("revisions");
        inner.started = Instant::now();
        inner.manual = 0;
        inner.view = Arc::clone(&self.base);
    }

    /// Whether exports advance the revision when their work is done.
    pub fn after_export(&self) -> bool {
        self.auto == AutoAdvance::AfterExport
    }

    /// The view at any revision (for computing expected states).
    pub fn at(&self, revision: u64) -> Arc<dyn DataSource> {
        if revision == 0 {
            return Arc::clone(&self.base);
        }
        self.base.at_revision(revision).unwrap_or_else(|| Arc::clone(&self.base))
    }
}
