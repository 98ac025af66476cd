//! Client adapters: how a case runs a client. The in-process reference client
//! ([`Builtin`]), any program through a command template ([`Command`]), or a
//! Rust client behind the [`ClientAdapter`] trait (or an async closure, [`from_fn`]).

pub mod builtin;
pub mod command;
pub mod template;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

pub use builtin::Builtin;
pub use command::Command;

use crate::scenario::ClientSpec;

/// Everything a client needs to run one case.
#[derive(Debug, Clone)]
pub struct CaseContext {
    /// The case id (`status/retry-after#form=http-date`).
    pub case_id: String,
    /// The FHIR base URL of the case's server.
    pub fhir_base: String,
    /// The token endpoint URL (empty when authorization is off).
    pub token_url: String,
    /// The registered client id (empty when authorization is off).
    pub client_id: String,
    /// The key id of the client's key.
    pub kid: String,
    /// `RS384` or `ES384`.
    pub alg: String,
    /// The private key as PKCS#8 PEM (empty when authorization is off).
    pub private_key_pem: String,
    /// What the client is asked to export.
    pub request: ClientSpec,
    /// The folder the client writes its output to.
    pub out_dir: PathBuf,
    /// The case's own folder (keys, config file, output folder inside).
    pub dir: PathBuf,
    /// The template variables (see [`template::VARIABLES`]).
    pub variables: BTreeMap<String, String>,
    /// The case's deadline.
    pub deadline: Duration,
    /// The run's seed.
    pub seed: u64,
}

impl CaseContext {
    /// Whether the case runs the client more than once on the same `out_dir`
    /// (`[incremental]`): the folder is then the client's state, kept up to
    /// date (the `run` variable is `full` or `incremental`).
    pub fn incremental(&self) -> bool {
        self.variables.get("run").is_some_and(|r| !r.is_empty())
    }
}

/// What a client run left behind, for the verdicts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientRun {
    /// The exit code (`None` when killed by a signal or timed out).
    pub exit_code: Option<i32>,
    /// The signal that ended the process, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The deadline passed and the client was stopped.
    pub timed_out: bool,
    /// The client flooded the server (far past the case's request bound) and was stopped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub flooded: bool,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The last part of standard output.
    pub stdout: String,
    /// The last part of standard error (or the in-process client's error).
    pub stderr: String,
    /// The client could not be started at all (bad template, missing program).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_error: Option<String>,
    /// When the run ended (Unix milliseconds, set by the runner): with the
    /// transcript, how long a stopped client had been waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_unix_ms: Option<u64>,
}

impl ClientRun {
    /// The client's own last word: the last non-empty line of standard error,
    /// else of standard output (some clients report failures there).
    pub fn reason(&self) -> &str {
        [&self.stderr, &self.stdout]
            .into_iter()
            .find_map(|text| text.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("(no output)")
    }
}

/// A boxed future of a [`ClientRun`].
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = ClientRun> + Send + 'a>>;

/// A client the harness can run: implement this for your own Rust client.
///
/// `run` must export what `ctx.request` asks into `ctx.out_dir` and return
/// how it ended; the harness enforces `ctx.deadline` itself.
pub trait ClientAdapter: Send + Sync {
    /// A short name for reports (`builtin`, the command line, your client's name).
    fn name(&self) -> String;
    /// Runs the client for one case.
    fn run<'a>(&'a self, ctx: &'a CaseContext) -> RunFuture<'a>;
    /// Whether `run` stops the client at `ctx.deadline` itself and then
    /// collects what it said (the command adapter does). The runner then
    /// allows it a short grace beyond the deadline to hand its output over,
    /// instead of dropping the run, and its stdout and stderr, at the deadline.
    fn enforces_deadline(&self) -> bool {
        false
    }
}

/// An adapter from an async closure returning the exit code (0 = success) or an error message.
pub struct FnAdapter<F> {
    name: String,
    f: F,
}

/// Wraps an async closure as a [`ClientAdapter`]: `Ok(code)` is the exit code,
/// `Err(message)` a failed run (exit code 1, the message as stderr).
pub fn from_fn<F, Fut>(name: &str, f: F) -> FnAdapter<F>
where
    F: Fn(CaseContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<i32, String>> + Send,
{
    FnAdapter { name: name.to_string(), f }
}

impl<F, Fut> ClientAdapter for FnAdapter<F>
where
    F: Fn(CaseContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<i32, String>> + Send,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run<'a>(&'a self, ctx: &'a CaseContext) -> RunFuture<'a> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let (exit_code, stderr) = match (self.f)(ctx.clone()).await {
                Ok(code) => (code, String::new()),
                Err(message) => (1, message),
            };
            ClientRun {
                exit_code: Some(exit_code),
                seconds: started.elapsed().as_secs_f64(),
                stderr,
                ..ClientRun::default()
            }
        })
    }
}
