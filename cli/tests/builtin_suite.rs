//! The suite inside the tool (issue 21, item 1): the binary run where there is
//! no `./scenarios` uses the scenario library compiled into it and says so;
//! `./scenarios` wins when present; `--suite builtin` forces the built-in one;
//! `scenarios export` writes the repository's `scenarios/` folder back, byte
//! for byte, refusing to overwrite; the same files give the same digest,
//! built in or exported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bulkmock_harness::suite;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bulkmock");

/// A quick case without a matrix: a Group with no members.
const QUICK: &str = "happy/group-empty";

fn repository_scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// `bulkmock args...` run in `dir`, with no `BULKMOCK_*` setting from outside.
fn bulkmock(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BULKMOCK_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every file under `root` (hidden ones excepted, as the build embeds them): relative path -> bytes.
fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn run_where_there_is_no_scenarios_folder_uses_the_builtin_suite_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = bulkmock(dir.path(), &["run", "--filter", QUICK, "--json", "result.json"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("bulkmock run: suite built-in (bulkmock 0.1.0, no ./scenarios here)"), "{err}");
    assert!(stdout(&out).contains("suite built-in sha256:"), "the summary names it too:\n{}", stdout(&out));
    let report = json(&dir.path().join("result.json"));
    let expected = suite::builtin().filter(QUICK).identity();
    assert_eq!(report["suite"]["source"], "builtin");
    assert_eq!(report["suite"]["digest"], expected.digest.as_str());
    assert_eq!(report["suite"]["cases_total"], 1);
    assert!(report["suite"].get("paths").is_none(), "no paths for the built-in suite");
    assert_eq!(report["cases"][0]["verdict"], "pass");
    let rerun = report["cases"][0]["rerun"].as_str().unwrap();
    assert!(rerun.starts_with("bulkmock run --suite builtin --filter"), "{rerun}");
    // Nothing was written besides the result.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["result.json"]);
}

#[test]
fn a_scenarios_folder_here_comes_first_and_suite_builtin_forces_the_builtin_one() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("scenarios/own");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::copy(repository_scenarios().join(format!("{QUICK}.toml")), own.join("mine.toml")).unwrap();

    let out = bulkmock(dir.path(), &["scenarios", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("suite scenarios (./scenarios found here; --suite builtin"), "{}", stderr(&out));
    assert!(stdout(&out).contains("own/mine") && stdout(&out).ends_with("1 scenarios, 1 cases\n"), "{}", stdout(&out));

    let out = bulkmock(dir.path(), &["scenarios", "list", "--suite", "builtin"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("suite built-in (bulkmock 0.1.0)"), "{}", stderr(&out));
    let builtin = suite::builtin();
    let last = format!("{} scenarios, {} cases\n", builtin.files().len(), builtin.len());
    assert!(stdout(&out).ends_with(&last), "{}", stdout(&out));

    // --suite with a path is a path; the built-in suite and paths together are refused.
    let out = bulkmock(dir.path(), &["scenarios", "check", "--suite", "scenarios/own"]);
    assert!(out.status.success() && stdout(&out).contains("1 scenarios, 1 cases: all valid"), "{}", stderr(&out));
    let out = bulkmock(dir.path(), &["run", "--suite", "builtin", "scenarios"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--suite builtin takes no paths"), "{}", stderr(&out));

    // A bad file in an implicit ./scenarios says how to get the built-in suite instead.
    std::fs::write(dir.path().join("scenarios/own/bad.toml"), "title = 1\n").unwrap();
    let out = bulkmock(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("scenarios/own/bad.toml:1") && err.contains("--suite builtin uses the built-in suite"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("scenarios/own/bad.toml")).unwrap();

    // A run from ./scenarios reports it as paths.
    let out = bulkmock(dir.path(), &["run", "--json", "result.json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&dir.path().join("result.json"));
    assert_eq!(report["suite"]["source"], "paths");
    assert_eq!(report["suite"]["paths"], serde_json::json!(["scenarios"]));
    assert_eq!(report["cases"][0]["id"], "own/mine");
}

#[test]
fn export_writes_the_repository_scenarios_folder_with_the_builtin_digest() {
    let dir = tempfile::tempdir().unwrap();
    let out = bulkmock(dir.path(), &["scenarios", "export", "mine"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exported = dir.path().join("mine");
    let (written, repository) = (files_under(&exported), files_under(&repository_scenarios()));
    assert_eq!(written.keys().collect::<Vec<_>>(), repository.keys().collect::<Vec<_>>(), "the same files");
    for (path, bytes) in &repository {
        assert!(&written[path] == bytes, "{path} differs from the repository's");
    }
    assert!(written.contains_key("COVERAGE.md"));
    let builtin = suite::builtin().identity();
    assert!(stdout(&out).contains(&builtin.digest), "{}", stdout(&out));

    // The same files give the same digest: the library's and a run's.
    let from_disk = suite::from_paths(std::slice::from_ref(&exported)).unwrap().identity();
    assert_eq!((&from_disk.digest, from_disk.cases_total), (&builtin.digest, builtin.cases_total));
    let out = bulkmock(dir.path(), &["run", "mine", "--filter", QUICK, "--json", "result.json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&dir.path().join("result.json"));
    assert_eq!(report["suite"]["digest"], suite::builtin().filter(QUICK).identity().digest.as_str());
    assert_eq!(report["suite"]["paths"], serde_json::json!(["mine"]));
}

#[test]
fn export_overwrites_nothing_without_force_and_writes_nothing_half() {
    let dir = tempfile::tempdir().unwrap();
    // One file of the suite is there already: nothing at all is written.
    let target = dir.path().join("mine");
    std::fs::create_dir_all(target.join("happy")).unwrap();
    std::fs::write(target.join("happy/group-empty.toml"), "my edit\n").unwrap();
    let out = bulkmock(dir.path(), &["scenarios", "export", "mine"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("1 file(s) exist already"), "{err}");
    assert!(
        err.contains("happy/group-empty.toml") && err.contains("nothing written (--force overwrites them)"),
        "{err}"
    );
    assert_eq!(files_under(&target).into_keys().collect::<Vec<_>>(), ["happy/group-empty.toml"]);
    assert_eq!(std::fs::read_to_string(target.join("happy/group-empty.toml")).unwrap(), "my edit\n");

    // --force writes the suite over it and leaves other files alone.
    std::fs::write(target.join("notes.txt"), "mine\n").unwrap();
    let out = bulkmock(dir.path(), &["scenarios", "export", "mine", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = files_under(&target);
    assert_eq!(written["happy/group-empty.toml"], suite::builtin_file("happy/group-empty.toml").unwrap());
    assert_eq!(written["notes.txt"], b"mine\n");
    assert_eq!(written.len(), suite::builtin_files().len() + 1);
}

/// A minimal container image (Debian slim) has no CA certificates: the binary
/// must still serve and run cases (found building the Dockerfile's image,
/// where `run` panicked building its HTTP client). `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` pointing at nothing make this system look like one.
#[test]
fn runs_where_the_system_has_no_ca_certificates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("no-certs")).unwrap();
    std::fs::write(dir.path().join("no-certs.pem"), "").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--suite", "builtin", "--filter", QUICK, "--filter", "auth/jwks-url", "--json", "result.json"])
        .current_dir(dir.path())
        .env("SSL_CERT_FILE", dir.path().join("no-certs.pem"))
        .env("SSL_CERT_DIR", dir.path().join("no-certs"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BULKMOCK_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let report = json(&dir.path().join("result.json"));
    let cases = report["cases"].as_array().unwrap();
    assert!(cases.len() >= 2, "the quick case and a JWKS URL case: {cases:?}");
    for case in cases {
        assert_eq!(case["verdict"], "pass", "{case}");
    }
}
