//! The downstream experience cannot rot: a throwaway crate outside the
//! workspace depends on `bulkmock-harness` by path (feature `testing`, as
//! docs/rust.md says), runs three built-in cases against a tiny in-test
//! client with `Conformance`, and is built and run with `cargo test`, offline,
//! in this workspace's target folder (its dependencies are compiled already).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The throwaway crate's test: the reference client library, with one flaw
/// (it loses every Observation file), so one case passes and two fail.
const TEST_FILE: &str = r#"
use bulkmock_client::{Client, Credentials};
use bulkmock_harness::adapter::builtin::export_request;
use bulkmock_harness::prelude::*;

fn main() {
    let client = from_fn("tiny", |ctx: CaseContext| async move {
        let mut builder = Client::builder(&ctx.fhir_base);
        if !ctx.client_id.is_empty() {
            let key = ctx.private_key_pem.as_bytes();
            let credentials = Credentials::from_pem(&ctx.client_id, key, &ctx.kid, &ctx.request.scope)
                .map_err(|e| e.to_string())?;
            builder = builder.credentials(credentials);
        }
        let client = builder.build().await.map_err(|e| e.to_string())?;
        client.export(&export_request(&ctx.request), &ctx.out_dir).await.map_err(|e| e.to_string())?;
        // The flaw: Observations are lost.
        for entry in std::fs::read_dir(&ctx.out_dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.to_string_lossy().contains("Observation") {
                std::fs::remove_file(&path).map_err(|e| e.to_string())?;
            }
        }
        Ok(0)
    });
    let ids = ["happy/group-empty", "happy/type-param#level=patient", "happy/open-server#level=patient"];
    let mut conformance = Conformance::builtin().retain(|c| ids.contains(&c.id.as_str())).adapter(client);
    if std::env::var_os("DOWNSTREAM_REQUIRE_PASS").is_some() {
        conformance = conformance.require_pass();
    }
    conformance.run();
}
"#;

/// The complete test file of docs/rust.md: its first `rust` block after "## A complete test file".
fn guide_file(workspace: &Path) -> String {
    let guide = std::fs::read_to_string(workspace.join("docs/rust.md")).expect("docs/rust.md");
    let section = guide.split("\n## A complete test file\n").nth(1).expect("the section");
    let block = section.split("\n```rust\n").nth(1).expect("a rust block");
    block.split("\n```\n").next().expect("its end").to_string() + "\n"
}

fn manifest(workspace: &Path) -> String {
    let path = |p: &str| workspace.join(p).display().to_string().replace('\\', "/");
    // The workspace's profile, so the dependencies compiled for it are reused.
    format!(
        r#"[package]
name = "bulkmock-downstream-check"
version = "0.0.0"
edition = "2024"
publish = false

[dev-dependencies]
bulkmock-harness = {{ path = "{}", features = ["testing"] }}
bulkmock-client = {{ path = "{}" }}

[[test]]
name = "conformance"
harness = false

[[test]]
name = "guide"
harness = false

[workspace]

[profile.dev.package."*"]
opt-level = 1
[profile.dev.package.bulkmock-harness]
opt-level = 0
[profile.dev.package.bulkmock-client]
opt-level = 0
[profile.dev.package.bulkmock-server]
opt-level = 0
[profile.dev.package.bulkmock-wire]
opt-level = 0
"#,
        path("harness"),
        path("client")
    )
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn cargo_test(dir: &Path, target: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    let test = env.iter().find(|(k, _)| *k == "TEST").map_or("conformance", |(_, v)| v);
    cmd.current_dir(dir)
        .args(["test", "--offline", "--quiet", "--test", test])
        .args(args)
        // Dependencies from the workspace's build folder; this crate's outputs apart.
        .env("CARGO_BUILD_BUILD_DIR", target)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("CI")
        .env_remove("DOWNSTREAM_REQUIRE_PASS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cargo runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_downstream_crate_runs_the_builtin_cases_as_trials_with_snapshots() {
    let started = std::time::Instant::now();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { workspace.join(t) })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf());
    let dir = tempfile::Builder::new().prefix("bulkmock-downstream-").tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), manifest(&workspace)).unwrap();
    std::fs::write(dir.path().join("tests/conformance.rs"), TEST_FILE).unwrap();
    std::fs::write(dir.path().join("tests/guide.rs"), guide_file(&workspace)).unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), "//! A throwaway crate.\n").unwrap();
    // The workspace's lock: the same versions, all in the local registry cache.
    std::fs::copy(workspace.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    let show = |r: &Run| format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", r.code, r.stdout, r.stderr);

    // First run: the snapshots are new; accepted, each case is a passing trial.
    let first = cargo_test(dir.path(), &target, &[], &[("INSTA_UPDATE", "always")]);
    assert_eq!(first.code, Some(0), "{}", show(&first));
    assert!(first.stdout.contains("3 passed; 0 failed"), "{}", show(&first));
    let snaps = dir.path().join("tests/snapshots");
    let failing = std::fs::read_to_string(snaps.join("happy__type-param_level_patient.snap")).unwrap();
    assert!(failing.contains("verdict: fail") && failing.contains("output.matches_export:"), "{failing}");
    assert!(failing.contains("evidence:"), "the evidence message is in the snapshot: {failing}");
    assert!(std::fs::read_to_string(snaps.join("happy__group-empty.snap")).unwrap().contains("verdict: pass"));

    // Second run, as CI: nothing new is written, and the snapshots (evidence included) are stable.
    let second = cargo_test(dir.path(), &target, &[], &[("INSTA_UPDATE", "no")]);
    assert_eq!(second.code, Some(0), "{}", show(&second));
    assert!(second.stdout.contains("3 passed; 0 failed"), "{}", show(&second));

    // Requiring a pass: the flawed cases fail with `bulkmock run`'s lines and a cargo re-run hint.
    let strict = cargo_test(dir.path(), &target, &[], &[("INSTA_UPDATE", "no"), ("DOWNSTREAM_REQUIRE_PASS", "1")]);
    assert_eq!(strict.code, Some(101), "{}", show(&strict));
    assert!(strict.stdout.contains("1 passed; 2 failed"), "{}", show(&strict));
    assert!(strict.stdout.contains("FAIL    happy/type-param#level=patient  (complete,"), "{}", show(&strict));
    assert!(strict.stdout.contains("fail  MUST   output.matches_export ["), "{}", show(&strict));
    let rerun = "re-run: cargo test -p bulkmock-downstream-check --test conformance -- --exact 'happy/type-param#level=patient'";
    assert!(strict.stdout.contains(rerun), "{}", show(&strict));

    // One case, as the hint says: the filter selects it alone.
    let one = cargo_test(dir.path(), &target, &["--", "--exact", "happy/group-empty"], &[("INSTA_UPDATE", "no")]);
    assert_eq!(one.code, Some(0), "{}", show(&one));
    assert!(one.stdout.contains("1 passed; 0 failed; 0 ignored; 0 measured; 2 filtered out"), "{}", show(&one));
    let listed = cargo_test(dir.path(), &target, &["--", "--list", "--format", "terse"], &[]);
    assert_eq!(listed.stdout.lines().filter(|l| l.ends_with(": test")).count(), 3, "{}", show(&listed));

    // The guide's complete test file, as it stands, on one case of the whole built-in suite.
    let guide = cargo_test(
        dir.path(),
        &target,
        &["--", "--exact", "happy/group-empty"],
        &[("TEST", "guide"), ("INSTA_UPDATE", "always")],
    );
    assert_eq!(guide.code, Some(0), "{}", show(&guide));
    let others = bulkmock_harness::suite::builtin().len() - 1;
    assert!(
        guide.stdout.contains(&format!("1 passed; 0 failed; 0 ignored; 0 measured; {others} filtered out")),
        "{}",
        show(&guide)
    );
    eprintln!("downstream crate: built and run six times in {:.1} s", started.elapsed().as_secs_f64());
}
