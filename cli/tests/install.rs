//! The install paths of the README work: `cargo install --locked --path cli`
//! and the `--git` form (from this repository's own commit, by a `file://`
//! URL), each giving a `bulkmock` that judges a client; and, where a Docker
//! daemon answers, the Dockerfile's image. Builds reuse this workspace's
//! compiled dependencies (`CARGO_BUILD_BUILD_DIR`) and put the binary in a
//! temporary folder, never in the target folder other tests run from.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The target folder this test was built in (its intermediate artifacts are reused).
fn build_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root().join(t) })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf())
}

fn cargo_install(tmp: &Path, source: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(["install", "--locked", "--debug", "--quiet", "--root"])
        .arg(tmp.join("root"))
        .args(source)
        .env("CARGO_BUILD_BUILD_DIR", build_dir())
        .env("CARGO_TARGET_DIR", tmp.join("target"))
        .output()
        .expect("cargo runs")
}

/// The installed binary judges the reference client on one built-in case, from an empty folder.
fn judges(tmp: &Path) {
    let bin = tmp.join("root/bin/bulkmock");
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("bulkmock {}", env!("CARGO_PKG_VERSION")));
    let empty = tmp.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = Command::new(&bin).args(["run", "--filter", "happy/group-empty"]).current_dir(&empty).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("suite built-in"), "no ./scenarios: the built-in suite: {stderr}");
}

#[test]
fn cargo_install_from_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = root();
    let out = cargo_install(tmp.path(), &["--offline", "--path", root.join("cli").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    judges(tmp.path());
}

#[test]
fn cargo_install_from_git() {
    let root = root();
    let head = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&root).output();
    let Some(head) = head.ok().filter(|o| o.status.success()) else {
        eprintln!("skipped: {} is not a git checkout", root.display());
        return;
    };
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let shallow = Command::new("git").args(["rev-parse", "--is-shallow-repository"]).current_dir(&root).output();
    if shallow.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true") {
        eprintln!("skipped: a shallow clone (CI checkouts often are) cannot be cloned from");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.display());
    let out = cargo_install(tmp.path(), &["--git", &url, "--rev", &head, "bulkmock"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && ["index", "network", "resolve", "spurious"].iter().any(|w| stderr.contains(w)) {
        eprintln!("skipped: the registry index cannot be reached for the git form: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    judges(tmp.path());
}

#[test]
fn the_docker_image_holds_a_working_binary() {
    let reachable = Command::new("docker").args(["info"]).output().is_ok_and(|o| o.status.success());
    if !reachable {
        eprintln!("skipped: no Docker daemon answers `docker info` here");
        return;
    }
    if std::env::var_os("BULKMOCK_SKIP_DOCKER").is_some() {
        eprintln!("skipped: BULKMOCK_SKIP_DOCKER is set");
        return;
    }
    let tag = "bulkmock-test:latest";
    let build = Command::new("docker").args(["build", "-q", "-t", tag, "."]).current_dir(root()).output().unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let version = Command::new("docker").args(["run", "--rm", tag, "--version"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("bulkmock {}", env!("CARGO_PKG_VERSION")));
    let run =
        Command::new("docker").args(["run", "--rm", tag, "run", "--filter", "happy/group-empty"]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}
