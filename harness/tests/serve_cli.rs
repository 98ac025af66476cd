//! `bulkmock serve` as a user runs it: flags, environment variables, errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `bulkmock serve`; killed on drop.
struct Serve {
    child: Child,
    fhir_base: String,
    banner: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free port and reads the banner it prints once listening.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .arg("serve")
        .args(["--port", "0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let fhir_base = loop {
        let line = lines.next().expect("the banner names the FHIR base").unwrap();
        banner.push(line.clone());
        if let Some(base) = line.trim().strip_prefix("FHIR base:") {
            break base.trim().to_string();
        }
    };
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Press Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    Serve { child, fhir_base, banner }
}

#[tokio::test]
async fn serve_prints_its_base_and_runs_an_export() {
    let s = serve(&["--patients", "6", "--job-duration", "0s", "--seed", "7"], &[]);
    assert!(s.fhir_base.starts_with("http://127.0.0.1:") && s.fhir_base.ends_with("/fhir"));
    assert!(!s.fhir_base.contains(":0/"), "the chosen port is printed, not 0");
    assert!(s.banner.iter().any(|l| l.contains("6 patients, seed 7")), "{:?}", s.banner);
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/$export?_type=Patient", s.fhir_base))
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let manifest: serde_json::Value = loop {
        let r = client.get(&status).send().await.unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert_eq!(r.status(), 202);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let url = manifest["output"][0]["url"].as_str().unwrap();
    let body = client.get(url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body.lines().count(), 6);
}

#[tokio::test]
async fn flags_can_come_from_the_environment() {
    let s = serve(&[], &[("BULKMOCK_PATIENTS", "9"), ("BULKMOCK_BASE_URL", "https://mock.example.org")]);
    assert_eq!(s.fhir_base, "https://mock.example.org/fhir", "--base-url sets the links");
    assert!(s.banner.iter().any(|l| l.contains("9 patients")), "{:?}", s.banner);
}

#[test]
fn bad_flags_fail_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--port", "0", "--job-duration", "2weeks"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--job-duration") && err.contains("unknown unit"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--port", "0", "--data", "/nonexistent/bulkmock-data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read data folder /nonexistent/bulkmock-data"), "{err}");
}
