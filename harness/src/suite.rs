//! Scenario suites: the built-in one, compiled into the harness from the
//! workspace's `scenarios/` folder at the version of the build, and suites
//! loaded from files and folders. Both load through the same loader
//! ([`scenario::parse`]), with the same errors (file, line, field), and give
//! the same [`identity`](ScenarioSuite::identity) for the same files.
//!
//! ```
//! use bulkmock_harness::suite;
//! let auth = suite::builtin().area("auth");
//! assert!(auth.cases().all(|c| c.scenario_id.starts_with("auth/")));
//! let one = suite::builtin().filter("happy/patient-export");
//! assert!(one.len() >= 1);
//! // `bulkmock run --suite builtin --filter happy/patient-export` reports this digest.
//! println!("{}", one.identity().digest);
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::report::Suite;
use crate::scenario::{self, Case, ScenarioError, ScenarioFile};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtin_suite.rs"));
}

/// How the path of a built-in file starts (`builtin:auth/token-expires-mid-export.toml`):
/// in case paths, errors, and wherever one scenario file is asked for (`--scenario`).
pub const BUILTIN_PREFIX: &str = "builtin:";

/// Where a suite's scenarios come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuiteSource {
    /// Compiled into bulkmock (`--suite builtin`).
    Builtin,
    /// Files and folders, as given.
    Paths(Vec<PathBuf>),
}

impl SuiteSource {
    /// `builtin` or `paths`: the JSON report's `suite.source`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SuiteSource::Builtin => "builtin",
            SuiteSource::Paths(_) => "paths",
        }
    }
}

impl std::fmt::Display for SuiteSource {
    /// `built-in (bulkmock 0.1.0)`, or the paths separated by commas.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SuiteSource::Builtin => write!(f, "built-in (bulkmock {})", env!("CARGO_PKG_VERSION")),
            SuiteSource::Paths(paths) => {
                let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                f.write_str(&paths.join(", "))
            }
        }
    }
}

/// A loaded scenario suite: its source and its scenario files (in id order),
/// narrowed by [`area`](Self::area) and [`filter`](Self::filter).
#[derive(Debug, Clone)]
pub struct ScenarioSuite {
    source: SuiteSource,
    files: Vec<ScenarioFile>,
}

/// The built-in suite: every scenario of the `scenarios/` folder this bulkmock
/// was built from, each case's path `builtin:<path under scenarios/>`.
///
/// # Panics
///
/// When a built-in file does not load: a defect of the build, never of the
/// caller (the workspace's tests load every one).
pub fn builtin() -> ScenarioSuite {
    static SUITE: OnceLock<ScenarioSuite> = OnceLock::new();
    SUITE
        .get_or_init(|| {
            let files = builtin_scenarios().unwrap_or_else(|e| panic!("the built-in suite: {e}"));
            ScenarioSuite { source: SuiteSource::Builtin, files }
        })
        .clone()
}

/// The suite of every `*.toml` scenario under `paths` (files or folders,
/// recursively), as [`scenario::load_paths`] loads them.
pub fn from_paths(paths: &[PathBuf]) -> Result<ScenarioSuite, ScenarioError> {
    let files = scenario::load_paths(paths)?;
    Ok(ScenarioSuite { source: SuiteSource::Paths(paths.to_vec()), files })
}

impl ScenarioSuite {
    /// Where the scenarios come from.
    pub fn source(&self) -> &SuiteSource {
        &self.source
    }

    /// The scenario files left, in id order, each with its cases left.
    pub fn files(&self) -> &[ScenarioFile] {
        &self.files
    }

    /// Every case, in scenario id order.
    pub fn cases(&self) -> impl Iterator<Item = &Case> {
        self.files.iter().flat_map(|f| &f.cases)
    }

    /// Every case, owned (what [`runner::run`](crate::runner::run) takes).
    pub fn into_cases(self) -> Vec<Case> {
        self.files.into_iter().flat_map(|f| f.cases).collect()
    }

    /// The number of cases.
    pub fn len(&self) -> usize {
        self.files.iter().map(|f| f.cases.len()).sum()
    }

    /// Whether no case is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The case with exactly this id (`status/retry-after#form=retry_after_s`).
    pub fn case(&self, id: &str) -> Option<&Case> {
        self.cases().find(|c| c.id == id)
    }

    /// The areas (first segment of the scenario ids: `auth`, `files`, ...), sorted.
    pub fn areas(&self) -> Vec<&str> {
        let mut areas: Vec<&str> = self.files.iter().map(|f| area_of(&f.id)).collect();
        areas.dedup();
        areas
    }

    /// Only the scenarios of `area` (`auth`: every `auth/...` scenario).
    pub fn area(self, area: &str) -> ScenarioSuite {
        self.retain(|c| area_of(&c.scenario_id) == area)
    }

    /// Only the cases whose id starts with `prefix`, as `bulkmock run --filter`.
    pub fn filter(self, prefix: &str) -> ScenarioSuite {
        self.retain(|c| c.id.starts_with(prefix))
    }

    /// Only the cases `keep` keeps.
    pub fn retain(mut self, mut keep: impl FnMut(&Case) -> bool) -> ScenarioSuite {
        for file in &mut self.files {
            file.cases.retain(&mut keep);
        }
        self.files.retain(|f| !f.cases.is_empty());
        self
    }

    /// The report's `suite` for a run of every case left: the digest of the
    /// case ids and the bytes of their scenario files, the case count, and the
    /// source. The same files give the same digest, built in or on disk.
    pub fn identity(&self) -> Suite {
        let cases: Vec<Case> = self.cases().cloned().collect();
        self.identity_of(&cases)
    }

    /// The report's `suite` for `cases` (a selection of this suite's), with this suite's source.
    pub fn identity_of(&self, cases: &[Case]) -> Suite {
        let mut suite = Suite::of(cases);
        suite.source = Some(self.source.as_str().to_string());
        if let SuiteSource::Paths(paths) = &self.source {
            suite.paths = paths.iter().map(|p| p.display().to_string()).collect();
        }
        suite
    }
}

impl Suite {
    /// Where the suite came from, for people: `built-in`, or the paths given
    /// (`scenarios, extra/`); `None` when the result does not say.
    pub fn origin(&self) -> Option<String> {
        match self.source.as_deref()? {
            "builtin" => Some("built-in".into()),
            _ if !self.paths.is_empty() => Some(self.paths.join(", ")),
            other => Some(other.to_string()),
        }
    }
}

/// The area of a scenario id: its first segment.
fn area_of(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// Every file of the built-in suite (the scenarios and the rest of the folder,
/// such as `COVERAGE.md`): path under `scenarios/` (with `/`) and bytes, sorted by path.
pub fn builtin_files() -> impl ExactSizeIterator<Item = (&'static str, &'static [u8])> {
    embedded::FILES.iter().copied()
}

/// The bytes of the built-in file at `path` (under `scenarios/`, with `/`).
pub fn builtin_file(path: &str) -> Option<&'static [u8]> {
    embedded::FILES.binary_search_by(|(p, _)| (*p).cmp(path)).ok().map(|i| embedded::FILES[i].1)
}

/// The built-in scenario files, parsed, in id order.
fn builtin_scenarios() -> Result<Vec<ScenarioFile>, ScenarioError> {
    let mut out = Vec::new();
    for (rel, bytes) in builtin_files().filter(|(rel, _)| rel.ends_with(".toml")) {
        out.push(parse_builtin(rel, bytes)?);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// One built-in file through the loader: `builtin:<rel>` names it in errors.
fn parse_builtin(rel: &str, bytes: &[u8]) -> Result<ScenarioFile, ScenarioError> {
    let path = PathBuf::from(format!("{BUILTIN_PREFIX}{rel}"));
    let text = std::str::from_utf8(bytes).map_err(|_| ScenarioError {
        file: path.clone(),
        line: 0,
        field: None,
        message: "cannot read: stream did not contain valid UTF-8".into(),
    })?;
    let loaded = scenario::parse(text, &path)?;
    Ok(scenario::load::with_id(loaded, rel.trim_end_matches(".toml")))
}

/// One scenario file as `--scenario` names it: `builtin:<path>` (a file of the
/// built-in suite, `.toml` optional: `builtin:happy/patient-export`) or a path on disk.
pub fn load_scenario(path: &Path) -> Result<Vec<ScenarioFile>, ScenarioError> {
    let Some(rel) = path.to_str().and_then(|p| p.strip_prefix(BUILTIN_PREFIX)) else {
        return scenario::load_paths(std::slice::from_ref(&path.to_path_buf()));
    };
    let rel = rel.trim_start_matches("./").trim_start_matches("scenarios/");
    let rel = if rel.ends_with(".toml") { rel.to_string() } else { format!("{rel}.toml") };
    let bytes = builtin_file(&rel).ok_or_else(|| ScenarioError {
        file: path.to_path_buf(),
        line: 0,
        field: None,
        message: "no such scenario in the built-in suite (`bulkmock scenarios list --suite builtin` lists them)".into(),
    })?;
    Ok(vec![parse_builtin(&rel, bytes)?])
}

/// The bytes of a scenario file: from the built-in suite for a `builtin:` path,
/// else read from disk (empty when unreadable).
pub(crate) fn scenario_bytes(path: &Path) -> Vec<u8> {
    match path.to_str().and_then(|p| p.strip_prefix(BUILTIN_PREFIX)) {
        Some(rel) => builtin_file(rel).map(<[u8]>::to_vec).unwrap_or_default(),
        None => std::fs::read(path).unwrap_or_default(),
    }
}

/// Why [`export_builtin`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Files of the suite exist in the folder already (and overwriting was not asked for).
    #[error("{} file(s) exist already: {}", .0.len(), list(.0))]
    Exists(Vec<PathBuf>),
    /// A file or folder could not be written (what was written before is removed again).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let mut names: Vec<String> = paths.iter().take(5).map(|p| p.display().to_string()).collect();
    if paths.len() > 5 {
        names.push(format!("... ({} more)", paths.len() - 5));
    }
    names.join(", ")
}

/// Writes every file of the built-in suite under `dir` (created when missing),
/// as the `scenarios/` folder it was built from, and returns the files written.
/// Without `overwrite`, nothing is written when any of them exists already;
/// either way nothing is left half: each file is written whole (a temporary
/// file renamed), and on an error the files and folders this call created are
/// removed. Files in `dir` that are not in the suite are left alone.
pub fn export_builtin(dir: &Path, overwrite: bool) -> Result<Vec<PathBuf>, ExportError> {
    let targets: Vec<(PathBuf, &[u8])> =
        builtin_files().map(|(rel, bytes)| (rel.split('/').fold(dir.to_path_buf(), |p, c| p.join(c)), bytes)).collect();
    if !overwrite {
        let existing: Vec<PathBuf> =
            targets.iter().filter(|(p, _)| p.symlink_metadata().is_ok()).map(|(p, _)| p.clone()).collect();
        if !existing.is_empty() {
            return Err(ExportError::Exists(existing));
        }
    }
    let mut created_dirs: Vec<PathBuf> = Vec::new();
    let mut created_files: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (path, bytes) in &targets {
            let parent = path.parent().expect("under dir");
            create_dirs(parent, &mut created_dirs)?;
            let existed = path.symlink_metadata().is_ok();
            let tmp = parent.join(format!(
                ".{}.bulkmock-export-{}",
                path.file_name().expect("a file name").to_string_lossy(),
                std::process::id()
            ));
            let io = |source| ExportError::Io { path: path.clone(), source };
            std::fs::write(&tmp, bytes).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io(e)
            })?;
            std::fs::rename(&tmp, path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io(e)
            })?;
            if !existed {
                created_files.push(path.clone());
            }
        }
        Ok(targets.iter().map(|(p, _)| p.clone()).collect())
    })();
    if result.is_err() {
        for file in &created_files {
            let _ = std::fs::remove_file(file);
        }
        for dir in created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

/// `dir` and its missing ancestors, each created one recorded (outermost first).
fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), ExportError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, created)?;
    }
    std::fs::create_dir(dir).map_err(|source| ExportError::Io { path: dir.to_path_buf(), source })?;
    created.push(dir.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_files_are_sorted_and_hold_the_scenarios_and_the_coverage_table() {
        let paths: Vec<&str> = builtin_files().map(|(p, _)| p).collect();
        assert!(paths.windows(2).all(|w| w[0] < w[1]), "sorted, for builtin_file's binary search");
        assert!(paths.contains(&"COVERAGE.md"));
        assert!(paths.iter().filter(|p| p.ends_with(".toml")).count() > 100);
        assert!(builtin_file("happy/patient-export.toml").is_some());
    }

    #[test]
    fn builtin_cases_carry_builtin_paths_and_ids_from_their_place() {
        let suite = builtin();
        let case = suite.case("happy/group-empty").expect("a case without a matrix");
        assert_eq!(case.path, Path::new("builtin:happy/group-empty.toml"));
        assert_eq!(case.scenario_id, "happy/group-empty");
        assert_eq!(scenario_bytes(&case.path), builtin_file("happy/group-empty.toml").unwrap());
        let matrix = suite.case("happy/patient-export#post=true").expect("a matrix case");
        assert_eq!(matrix.scenario_id, "happy/patient-export");
    }

    #[test]
    fn area_and_filter_narrow_the_suite() {
        let all = builtin();
        let auth = all.clone().area("auth");
        assert!(!auth.is_empty() && auth.len() < all.len());
        assert!(auth.cases().all(|c| c.scenario_id.starts_with("auth/")));
        assert_eq!(auth.areas(), ["auth"]);
        let areas = all.areas();
        assert!(areas.contains(&"auth") && areas.contains(&"files"), "{areas:?}");
        let total: usize = areas.iter().map(|a| all.clone().area(a).len()).sum();
        assert_eq!(total, all.len(), "every case is in one area");
        let status = all.clone().filter("status/retry-after#");
        assert!(status.len() > 1, "the matrix cases");
        assert!(status.cases().all(|c| c.id.starts_with("status/retry-after#")));
        assert!(all.clone().filter("no-such-area/").is_empty());
        assert_ne!(status.identity().digest, all.identity().digest, "the digest follows the selection");
        assert_eq!(status.identity().cases_total, status.len() as u64);
        assert_eq!(status.identity().source.as_deref(), Some("builtin"));
    }

    #[test]
    fn a_builtin_scenario_is_found_by_path_with_or_without_toml() {
        for name in ["builtin:happy/patient-export", "builtin:happy/patient-export.toml"] {
            let files = load_scenario(Path::new(name)).unwrap();
            assert_eq!(files[0].id, "happy/patient-export");
        }
        let e = load_scenario(Path::new("builtin:happy/nothing")).unwrap_err();
        assert!(e.to_string().starts_with("builtin:happy/nothing: no such scenario"), "{e}");
    }

    #[test]
    fn a_bad_builtin_file_is_named_with_its_line_as_on_disk() {
        let e = parse_builtin("auth/bad.toml", b"title = \"t\"\nnope = 1\n").unwrap_err();
        assert_eq!(e.file, Path::new("builtin:auth/bad.toml"));
        assert_eq!(e.line, 2);
        let on_disk = scenario::parse("title = \"t\"\nnope = 1\n", Path::new("scenarios/auth/bad.toml")).unwrap_err();
        assert_eq!((e.line, e.field, e.message), (on_disk.line, on_disk.field, on_disk.message));
    }
}
