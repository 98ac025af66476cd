//! Any program as the client under test: a command template run by `sh -c`
//! from the folder `bulkmock run` was started in (so relative paths in the
//! command work; `{case_dir}` names the case's own folder), in its own process
//! group, with every variable also in the environment as `BULKMOCK_<NAME>`. At the deadline the whole group is
//! killed, so helpers a client spawned cannot outlive the case.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::template::{Template, shell_quote};
use super::{CaseContext, ClientAdapter, ClientRun, RunFuture};

/// How long the output of a stopped client is read for after it ended (helpers
/// it spawned may hold its pipes open).
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Bytes of stdout and stderr kept per case (the last ones).
const KEPT_OUTPUT: usize = 64 * 1024;

/// An external client run through a command template.
#[derive(Debug, Clone)]
pub struct Command {
    command: Template,
    source: String,
    config: Option<(Template, PathBuf)>,
}

impl Command {
    /// A command adapter; `config` is a config-file template and the name the
    /// rendered file gets in each case folder (`{config_file}`). Unknown
    /// variables are errors here, before anything runs.
    pub fn new(command: &str, config: Option<(&str, &str, PathBuf)>) -> Result<Command, String> {
        let template = Template::parse(command, "--client-cmd")?;
        let config = match config {
            Some((text, name, file_name)) => Some((Template::parse(text, name)?, file_name)),
            None => None,
        };
        Ok(Command { command: template, source: command.to_string(), config })
    }

    /// The file name of the rendered config file, if there is a config template.
    pub fn config_file_name(&self) -> Option<&PathBuf> {
        self.config.as_ref().map(|(_, name)| name)
    }

    async fn launch(&self, ctx: &CaseContext) -> ClientRun {
        let started = Instant::now();
        let mut vars = ctx.variables.clone();
        if let Some((template, name)) = &self.config {
            let path = ctx.dir.join(name);
            vars.insert("config_file".into(), path.display().to_string());
            if let Err(e) = std::fs::write(&path, template.render(&vars, str::to_string)) {
                return launch_error(format!("cannot write the config file {}: {e}", path.display()));
            }
        }
        let line = self.command.render(&vars, shell_quote);
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&line)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (name, value) in &vars {
            command.env(format!("BULKMOCK_{}", name.to_uppercase()), value);
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => return launch_error(format!("cannot start `sh -c {line}`: {e}")),
        };
        // Killed on every way out (also when the runner drops this future): helpers
        // a client left behind must not outlive its case.
        let group = GroupGuard(child.id().map(|id| Pid::from_raw(id as i32)));
        let stdout = tokio::spawn(tail(child.stdout.take()));
        let stderr = tokio::spawn(tail(child.stderr.take()));
        let status = tokio::time::timeout(ctx.deadline, child.wait()).await;
        drop(group);
        let (exit_code, signal, timed_out) = match status {
            Ok(Ok(status)) => {
                use std::os::unix::process::ExitStatusExt;
                (status.code(), status.signal(), false)
            }
            Ok(Err(e)) => return launch_error(format!("waiting for the client failed: {e}")),
            Err(_) => {
                let _ = child.wait().await;
                (None, None, true)
            }
        };
        // Both tails at once, within the grace the runner allows past the deadline.
        let (stdout, stderr) =
            tokio::join!(tokio::time::timeout(OUTPUT_GRACE, stdout), tokio::time::timeout(OUTPUT_GRACE, stderr));
        let stdout = stdout.ok().and_then(Result::ok).unwrap_or_default();
        let stderr = stderr.ok().and_then(Result::ok).unwrap_or_default();
        ClientRun {
            exit_code,
            signal,
            timed_out,
            flooded: false,
            seconds: started.elapsed().as_secs_f64(),
            stdout,
            stderr,
            launch_error: None,
            ended_unix_ms: None,
        }
    }
}

/// Kills a process group when dropped.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

fn launch_error(message: String) -> ClientRun {
    ClientRun { launch_error: Some(message.clone()), stderr: message, ..ClientRun::default() }
}

/// Reads a stream to its end, keeping the last [`KEPT_OUTPUT`] bytes.
async fn tail(stream: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut stream) = stream else { return String::new() };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut dropped = false;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * KEPT_OUTPUT {
                    kept.drain(..kept.len() - KEPT_OUTPUT);
                    dropped = true;
                }
            }
        }
    }
    if kept.len() > KEPT_OUTPUT {
        kept.drain(..kept.len() - KEPT_OUTPUT);
        dropped = true;
    }
    let text = String::from_utf8_lossy(&kept).into_owned();
    if dropped { format!("[...]\n{text}") } else { text }
}

impl ClientAdapter for Command {
    fn name(&self) -> String {
        self.source.clone()
    }

    fn run<'a>(&'a self, ctx: &'a CaseContext) -> RunFuture<'a> {
        Box::pin(self.launch(ctx))
    }

    fn enforces_deadline(&self) -> bool {
        true
    }
}
