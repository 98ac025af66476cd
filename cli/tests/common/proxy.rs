//! Processes for the proxy tests: `bulkmock serve` (the upstream, auth on)
//! and `bulkmock proxy` in front of it, both on port 0, ready when their
//! banner is printed; `bulkmock export` (the reference client) against either.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_bulkmock");

/// A running `bulkmock` process; killed on drop.
pub struct Running {
    child: Child,
    /// The FHIR base from the banner.
    pub fhir_base: String,
    /// The banner's lines.
    pub banner: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// The origin (`http://127.0.0.1:PORT`).
    pub fn origin(&self) -> String {
        let start = self.fhir_base.find("://").unwrap() + 3;
        let end = self.fhir_base[start..].find('/').map_or(self.fhir_base.len(), |i| start + i);
        self.fhir_base[..end].to_string()
    }

    /// SIGTERM, then waits: whether it exited with 0.
    pub fn terminate(mut self) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap().success()
    }

    /// Stops the process (as Ctrl-C would not matter here) and waits for it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bulkmock {args}` with `--port 0`, stderr to `stderr` (or nowhere),
/// and reads its banner up to "Press Ctrl-C".
pub fn start(args: &[&str], stderr: Option<&Path>, env: &[(&str, &str)]) -> Running {
    let err = match stderr {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--port", "0"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap();
    let mut banner = Vec::new();
    let mut fhir_base = None;
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if let Some(base) = line.trim().strip_prefix("FHIR base:") {
            fhir_base = Some(base.trim().to_string());
        }
        let done = line.starts_with("Press Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    let fhir_base = fhir_base.unwrap_or_else(|| panic!("no FHIR base in the banner: {banner:?}"));
    Running { child, fhir_base, banner }
}

/// The upstream: `bulkmock serve` with auth on, its demo client's key in `dir`.
pub struct Upstream {
    pub server: Running,
    pub client_id: String,
    pub key: PathBuf,
}

/// Starts the upstream with `extra` flags (state in `dir`).
pub fn upstream(dir: &Path, extra: &[&str]) -> Upstream {
    let state = dir.join("upstream-state");
    let state = state.to_str().unwrap();
    let mut args = vec!["serve", "--seed", "7", "--state-dir", state];
    if !extra.contains(&"--job-duration") {
        args.extend(["--job-duration", "0s"]);
    }
    args.extend_from_slice(extra);
    let server = start(&args, None, &[]);
    // Empty when the upstream is open (no authorization).
    let line = |prefix: &str| {
        server
            .banner
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let client_id = line("client id:");
    let key = PathBuf::from(line("client key:").split(' ').next().unwrap());
    Upstream { server, client_id, key }
}

/// Starts a proxy in front of `upstream` with `extra` flags.
pub fn proxy(upstream: &str, extra: &[&str], stderr: Option<&Path>, env: &[(&str, &str)]) -> Running {
    let mut args = vec!["proxy", "--upstream", upstream];
    args.extend_from_slice(extra);
    start(&args, stderr, env)
}

/// Runs `bulkmock export` against `fhir_base` with the upstream's client into `out`.
pub fn export(up: &Upstream, fhir_base: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["export", "--fhir-url", fhir_base, "--client-id", &up.client_id])
        .arg("--key")
        .arg(&up.key)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("BULKMOCK_FHIR_URL")
        .output()
        .unwrap()
}

/// The NDJSON files of an export folder, by name.
pub fn ndjson_files(out: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Writes a fault plan file.
pub fn plan(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    path
}

/// The exchanges of a live transcript file.
pub fn transcript(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
