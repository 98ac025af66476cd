//! Shared by the benches: the release `bulkmock serve` as a child process, and
//! peak memory from `/proc`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `bulkmock serve --open`, killed on drop.
pub struct Server {
    child: Child,
    /// Its FHIR base URL.
    pub fhir_base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts an open server with zero job duration and these sizes.
    pub fn start(patients: u64, resources_per_file: u64) -> Server {
        Server::start_with_density(patients, resources_per_file, "light")
    }

    /// [`Server::start`] with `--density` (`light` or `realistic`).
    pub fn start_with_density(patients: u64, resources_per_file: u64, density: &str) -> Server {
        let (patients, per_file) = (patients.to_string(), resources_per_file.to_string());
        Server::spawn(&[
            "--open",
            "--port",
            "0",
            "--job-duration",
            "0s",
            "--patients",
            &patients,
            "--resources-per-file",
            &per_file,
            "--density",
            density,
        ])
    }

    /// Starts `bulkmock serve` with `args` and waits for its banner's FHIR base.
    pub fn spawn(args: &[&str]) -> Server {
        Server::spawn_command("serve", args)
    }

    /// Starts `bulkmock {command}` (`serve`, `proxy`) with `args` and waits for its banner's FHIR base.
    pub fn spawn_command(command: &str, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
            .arg(command)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bulkmock");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let fhir_base = loop {
            let line = lines.next().expect("banner").unwrap();
            if let Some(base) = line.trim().strip_prefix("FHIR base:") {
                break base.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, fhir_base }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the server so far, in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        peak_rss_mb(self.child.id()).unwrap_or(f64::NAN)
    }
}

/// Peak resident memory of process `pid` so far, in MB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}
