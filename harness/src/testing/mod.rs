//! The testing API (feature `testing`): every selected case of a suite as one
//! `cargo test` trial, run against your client, each snapshotted with insta.
//!
//! In a test file declared `harness = false` (`[[test]] name = "conformance"`):
//!
//! ```no_run
//! use bulkmock_harness::prelude::*;
//!
//! fn main() {
//!     let client = from_fn("my-client", |ctx: CaseContext| async move {
//!         // Export what `ctx.request` asks from `ctx.fhir_base` into `ctx.out_dir`.
//!         Ok(0)
//!     });
//!     Conformance::builtin().area("happy").adapter(client).run();
//! }
//! ```
//!
//! The selected cases run together first, in parallel, then each trial
//! compares its case's [`Snapshot`] (with its evidence messages) with
//! `tests/snapshots/<snapshot_name(id)>.snap`. A trial fails when the
//! snapshot differs (or is new), or when [`Require`] asks more than the
//! verdict gives, and then prints the case's lines as `bulkmock run` does,
//! evidence included, ending in the `cargo test` command that re-runs it.
//! docs/rust.md is the guide.

pub mod libtest;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use libtest::{Arguments, Conclusion, Trial};

use crate::adapter::ClientAdapter;
use crate::profile::ClientProfile;
use crate::report::snapshot::{Snapshot, snapshot_name};
use crate::report::terminal;
use crate::report::{CaseResult, CaseVerdict, RunReport};
use crate::runner::{self, RunOptions};
use crate::scenario::{ScenarioError, SnapshotDetail};
use crate::suite::{self, ScenarioSuite};

/// What a case's verdict must be for its trial to pass, besides its snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Require {
    /// Nothing: the snapshot (verdict, checks, evidence) is the assertion,
    /// so a case your client fails today is recorded, and a change shows.
    #[default]
    Snapshot,
    /// No MUST failure, error or timeout (`bulkmock run`'s exit code 0).
    Pass,
    /// No SHOULD failure either (`bulkmock run --strict`).
    Strict,
}

impl Require {
    /// Whether `verdict` meets the requirement.
    pub fn met_by(self, verdict: CaseVerdict) -> bool {
        matches!(
            (self, verdict),
            (Require::Snapshot, _)
                | (_, CaseVerdict::Pass | CaseVerdict::NotApplicable)
                | (Require::Pass, CaseVerdict::Warn)
        )
    }
}

/// A conformance run as `cargo test` trials: which cases, which client, what
/// to assert. Start with [`builtin`](Self::builtin) or [`paths`](Self::paths).
pub struct Conformance {
    suite: ScenarioSuite,
    adapter: Option<Arc<dyn ClientAdapter>>,
    snapshots: Option<PathBuf>,
    evidence: bool,
    require: Require,
    options: RunOptions,
    test_name: Option<String>,
}

impl std::fmt::Debug for Conformance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conformance")
            .field("cases", &self.suite.len())
            .field("adapter", &self.adapter.as_ref().map(|a| a.name()))
            .field("snapshots", &self.snapshots)
            .field("require", &self.require)
            .finish_non_exhaustive()
    }
}

impl Conformance {
    /// Every case of the built-in suite ([`suite::builtin`]).
    pub fn builtin() -> Conformance {
        Conformance::suite(suite::builtin())
    }

    /// Every case of the scenario files and folders under `paths`
    /// (relative paths from the package's folder, where `cargo test` runs).
    pub fn paths(paths: &[impl AsRef<Path>]) -> Result<Conformance, ScenarioError> {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
        Ok(Conformance::suite(suite::from_paths(&paths)?))
    }

    /// Every case of `suite`.
    pub fn suite(suite: ScenarioSuite) -> Conformance {
        Conformance {
            suite,
            adapter: None,
            snapshots: Some(PathBuf::from("tests/snapshots")),
            evidence: true,
            require: Require::Snapshot,
            options: RunOptions::default(),
            test_name: None,
        }
    }

    /// Only the cases of one area (`auth`, `files`, ...).
    pub fn area(mut self, area: &str) -> Conformance {
        self.suite = self.suite.area(area);
        self
    }

    /// Only the cases whose id starts with `prefix` (as `bulkmock run --filter`).
    pub fn filter(mut self, prefix: &str) -> Conformance {
        self.suite = self.suite.filter(prefix);
        self
    }

    /// Only the cases `keep` keeps.
    pub fn retain(mut self, keep: impl FnMut(&crate::scenario::Case) -> bool) -> Conformance {
        self.suite = self.suite.retain(keep);
        self
    }

    /// The client to judge (without one: the in-process reference client).
    pub fn adapter(mut self, adapter: impl ClientAdapter + 'static) -> Conformance {
        self.adapter = Some(Arc::new(adapter));
        self
    }

    /// Where snapshots go (default `tests/snapshots`; a relative folder is
    /// taken from the package's folder, `CARGO_MANIFEST_DIR`).
    pub fn snapshots(mut self, dir: impl Into<PathBuf>) -> Conformance {
        self.snapshots = Some(dir.into());
        self
    }

    /// No snapshots: only [`Require`] is asserted.
    pub fn without_snapshots(mut self) -> Conformance {
        self.snapshots = None;
        self
    }

    /// Snapshots without evidence messages (verdicts, checks, outcome and requests only).
    pub fn without_evidence(mut self) -> Conformance {
        self.evidence = false;
        self
    }

    /// What each case's verdict must be (default [`Require::Snapshot`]: nothing beyond the snapshot).
    pub fn require(mut self, require: Require) -> Conformance {
        self.require = require;
        self
    }

    /// Shorthand for [`require(Require::Pass)`](Self::require): no MUST failure.
    pub fn require_pass(self) -> Conformance {
        self.require(Require::Pass)
    }

    /// The run's seed (default 42).
    pub fn seed(mut self, seed: u64) -> Conformance {
        self.options.seed = seed;
        self
    }

    /// What the client supports: cases needing more are `not_applicable`, not run.
    pub fn profile(mut self, profile: ClientProfile) -> Conformance {
        self.options.time_scale = profile.time_scale;
        self.options.profile = Some(profile);
        self
    }

    /// Every other run option (jobs, time scale, work folder, identity, ...).
    pub fn options(mut self, options: RunOptions) -> Conformance {
        self.options = options;
        self
    }

    /// The test target's name in re-run hints (`cargo test --test NAME`);
    /// default: the test binary's name.
    pub fn test_name(mut self, name: &str) -> Conformance {
        self.test_name = Some(name.to_string());
        self
    }

    /// Parses the command line, runs the selected cases, runs one trial per
    /// case, and exits as `cargo test` expects.
    pub fn run(self) -> ! {
        let args = Arguments::from_args();
        self.run_with(&args).exit()
    }

    /// As [`run`](Self::run) with these arguments, returning what the trials came to.
    pub fn run_with(self, args: &Arguments) -> Conclusion {
        let trials = self.trials(args);
        libtest::run(args, trials)
    }

    /// Runs the cases `args` selects (none when listing) and returns one trial
    /// per case of the suite, named by its id: add your own and run them with
    /// [`libtest::run`].
    ///
    /// # Panics
    ///
    /// When no runtime or case folder can be made.
    pub fn trials(self, args: &Arguments) -> Vec<Trial> {
        let report = self.report(args);
        let results: Arc<HashMap<String, CaseResult>> =
            Arc::new(report.cases.into_iter().map(|c| (c.id.clone(), c)).collect());
        let dir = self.snapshots.map(|d| Arc::new(absolute(d)));
        let (evidence, require) = (self.evidence, self.require);
        self.suite
            .cases()
            .map(|case| {
                let (id, detail) = (case.id.clone(), case.scenario.expect.snapshot);
                let results = Arc::clone(&results);
                let dir = dir.clone();
                Trial::test(id.clone(), move || {
                    let result = results.get(&id).ok_or("the case did not run")?;
                    judge(result, require, dir.as_deref().map(|d| (d.as_path(), detail, evidence)))
                })
            })
            .collect()
    }

    /// Runs the selected cases together; the re-run hints name `cargo test`.
    fn report(&self, args: &Arguments) -> RunReport {
        let cases: Vec<_> = self.suite.cases().filter(|c| args.wants(&c.id)).cloned().collect();
        if cases.is_empty() || args.list {
            return RunReport::new(self.options.seed, String::new(), Vec::new());
        }
        let adapter: Arc<dyn ClientAdapter> =
            self.adapter.clone().unwrap_or_else(|| Arc::new(crate::adapter::Builtin::default()));
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let mut report = runtime
            .block_on(runner::run(cases, adapter, &self.options, &|_| {}))
            .expect("the case folders can be created");
        let command = rerun_command(self.test_name.as_deref());
        for case in &mut report.cases {
            case.rerun = format!("{command} -- --exact '{}'", case.id);
        }
        report
    }
}

/// One trial's verdict: the requirement, then the snapshot; a failure
/// message starts with the case's lines as `bulkmock run` prints them.
fn judge(case: &CaseResult, require: Require, snapshot: Option<(&Path, SnapshotDetail, bool)>) -> Result<(), String> {
    // The case's lines, with the re-run hint for every verdict (a trial can fail on its snapshot alone).
    let lines = || {
        let mut text = terminal::case_lines(case, false);
        if !text.contains("        re-run: ") {
            text.push_str(&format!("        re-run: {}\n", case.rerun));
        }
        text
    };
    if !require.met_by(case.verdict) {
        return Err(format!("{}the client must {}", lines(), requirement_text(require)));
    }
    let Some((dir, detail, evidence)) = snapshot else { return Ok(()) };
    let snap = match detail {
        SnapshotDetail::Full if evidence => Snapshot::of(case).with_evidence(case),
        SnapshotDetail::Full => Snapshot::of(case),
        SnapshotDetail::Outcome => Snapshot::outcome_of(case),
    };
    let name = snapshot_name(&case.id);
    let asserted = std::panic::catch_unwind(|| {
        insta::with_settings!({ snapshot_path => dir, prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_yaml_snapshot!(name.as_str(), snap);
        });
    });
    asserted.map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!(
            "{}the snapshot {}.snap differs or is new ({why}): review it with `cargo insta review`, \
             or accept it with INSTA_UPDATE=always",
            lines(),
            dir.join(&name).display()
        )
    })
}

fn requirement_text(require: Require) -> &'static str {
    match require {
        Require::Snapshot => "match its snapshot",
        Require::Pass => "pass every MUST check (Require::Pass)",
        Require::Strict => "pass every MUST and SHOULD check (Require::Strict)",
    }
}

/// `dir` from the package's folder when relative (`cargo test` sets
/// `CARGO_MANIFEST_DIR` when it runs a test; else the current folder).
fn absolute(dir: PathBuf) -> PathBuf {
    if dir.is_absolute() {
        return dir;
    }
    let base = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    base.join(dir)
}

/// `cargo test -p PACKAGE --test NAME`: the package from `CARGO_PKG_NAME`
/// (set by cargo when it runs a test), the name given or the binary's,
/// without cargo's `-<hash>` suffix.
fn rerun_command(name: Option<&str>) -> String {
    let binary = std::env::args().next().unwrap_or_default();
    let name = name.map(str::to_string).unwrap_or_else(|| test_target_name(&binary));
    match std::env::var("CARGO_PKG_NAME") {
        Ok(package) if !package.is_empty() => format!("cargo test -p {package} --test {name}"),
        _ => format!("cargo test --test {name}"),
    }
}

/// `target/debug/deps/conformance-0123456789abcdef` -> `conformance`.
fn test_target_name(binary: &str) -> String {
    let stem = Path::new(binary).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => stem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_target_is_the_binary_without_its_hash() {
        assert_eq!(test_target_name("/w/target/debug/deps/conformance-0123456789abcdef"), "conformance");
        assert_eq!(test_target_name("/w/target/debug/deps/my-test-0123456789abcdef"), "my-test");
        assert_eq!(test_target_name("conformance"), "conformance");
    }

    #[test]
    fn requirements_read_verdicts_as_the_cli_exit_code_does() {
        use CaseVerdict::*;
        assert!([Pass, Fail, Warn, Error, Timeout, NotApplicable].iter().all(|v| Require::Snapshot.met_by(*v)));
        assert!(Require::Pass.met_by(Warn) && !Require::Pass.met_by(Fail) && !Require::Pass.met_by(Timeout));
        assert!(!Require::Strict.met_by(Warn) && Require::Strict.met_by(NotApplicable));
    }
}
