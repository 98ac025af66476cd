//! The in-process reference client (`--client builtin`, the default).

use std::sync::{Arc, Mutex};

use bulkmock_client::{Client, ClientError, Credentials, Event, ExportRequest, Level, Policy};

use super::{CaseContext, ClientAdapter, ClientRun, RunFuture};
use crate::scenario::{ClientSpec, LevelName};

/// Exit codes of the reference client, one per kind of failure (documented in the README).
pub mod exit {
    /// The export finished and every file was checked.
    pub const OK: u8 = 0;
    /// Bad flags or an unreadable key file.
    pub const USAGE: u8 = 2;
    /// Authorization failed: token refused, no usable scope, key cannot sign, 401/403 from the server.
    pub const AUTH: u8 = 3;
    /// The server refused or failed the export (an OperationOutcome).
    pub const SERVER: u8 = 4;
    /// The server could not be reached, or connections kept failing.
    pub const NETWORK: u8 = 5;
    /// Downloaded data is damaged (a bad line, a count that does not match).
    pub const DATA: u8 = 6;
    /// Gave up: retries or polls used up on transient answers.
    pub const GAVE_UP: u8 = 7;
    /// The output folder could not be written, or already holds an export.
    pub const OUTPUT: u8 = 8;
    /// The server broke the protocol (unparseable body, missing header, redirect loop).
    pub const PROTOCOL: u8 = 9;
}

/// The exit code of the reference client for an error.
pub fn exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::OAuth { .. } | ClientError::ScopeNotGranted { .. } | ClientError::Key(_) => exit::AUTH,
        ClientError::Outcome { status: 401 | 403, .. } => exit::AUTH,
        ClientError::Outcome { .. } => exit::SERVER,
        ClientError::Transport { .. } | ClientError::Tls { .. } => exit::NETWORK,
        ClientError::CaCert(_) => exit::USAGE,
        ClientError::Integrity { .. } => exit::DATA,
        ClientError::Io { .. } => exit::OUTPUT,
        ClientError::Protocol(_) | ClientError::Unparseable { .. } => exit::PROTOCOL,
        ClientError::Exhausted { last, .. } => match **last {
            ClientError::Transport { .. } => exit::NETWORK,
            _ => exit::GAVE_UP,
        },
    }
}

/// The scenario's request as the reference client's [`ExportRequest`].
pub fn export_request(spec: &ClientSpec) -> ExportRequest {
    let level = match spec.level {
        LevelName::System => Level::System,
        LevelName::Patient => Level::Patient,
        LevelName::Group => Level::Group(spec.group.clone().unwrap_or_default()),
    };
    let mut r = ExportRequest::new(level);
    r.types = spec.types.clone();
    r.since = spec.since.clone();
    r.until = spec.until.clone();
    r.type_filters = spec.type_filters.clone();
    r.elements = spec.elements.clone();
    r.output_format = spec.output_format.clone();
    r.patients = spec.patients.clone();
    r.include_associated_data = spec.include_associated_data.clone();
    r.organize_output_by = spec.organize_output_by.clone();
    r.allow_partial_manifests = spec.allow_partial_manifests;
    r.separate_export_status = spec.separate_export_status;
    r.post = spec.post;
    r
}

/// The reference client of `bulkmock-client`, run in-process.
#[derive(Debug, Clone, Default)]
pub struct Builtin {
    /// The retry and polling policy (the client's defaults when `None`).
    pub policy: Option<Policy>,
    /// Ask for plain bodies (no `Accept-Encoding: gzip`), as a client without
    /// gzip support would: byte-offset faults then meet the plain body.
    pub plain: bool,
}

impl Builtin {
    /// Runs the export; `notes` receives the client's adaptations to the server's dialect (`Event::Adapted`).
    async fn export(&self, ctx: &CaseContext, notes: Arc<Mutex<Vec<String>>>) -> Result<(), ClientError> {
        let observer: bulkmock_client::Observer = Arc::new(move |event: &Event| {
            if let Event::Adapted { note } = event {
                notes.lock().expect("notes").push(format!("note: {note}"));
            }
        });
        let mut builder = Client::builder(&ctx.fhir_base)
            .seed(ctx.seed)
            .policy(self.policy.clone().unwrap_or_default())
            .observer(observer);
        if !ctx.client_id.is_empty() {
            let credentials =
                Credentials::from_pem(&ctx.client_id, ctx.private_key_pem.as_bytes(), &ctx.kid, &ctx.request.scope)?;
            builder = builder.credentials(credentials);
        }
        // An HTTPS case's local CA (CLI-032).
        if let Some(path) = ctx.variables.get("ca_cert").filter(|p| !p.is_empty()) {
            let pem = std::fs::read(path).map_err(|e| ClientError::CaCert(format!("{path}: {e}")))?;
            builder = builder.ca_cert(pem);
        }
        let client = builder.gzip(!self.plain).build().await?;
        let request = export_request(&ctx.request);
        if ctx.incremental() {
            // The folder is the client's state: the first run fills it, later ones
            // apply the changes since its manifest's transactionTime (CLI-054, CLI-087).
            return client.update(&request, &ctx.out_dir).await.map(|_| ());
        }
        client.export(&request, &ctx.out_dir).await.map(|_| ())
    }
}

impl ClientAdapter for Builtin {
    fn name(&self) -> String {
        "builtin".to_string()
    }

    fn run<'a>(&'a self, ctx: &'a CaseContext) -> RunFuture<'a> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let notes = Arc::new(Mutex::new(Vec::new()));
            let result = self.export(ctx, Arc::clone(&notes)).await;
            let (exit_code, stderr) = match result {
                Ok(()) => (exit::OK, String::new()),
                Err(e) => (exit_code(&e), e.to_string()),
            };
            let stdout = notes.lock().expect("notes").join("\n");
            ClientRun {
                exit_code: Some(i32::from(exit_code)),
                seconds: started.elapsed().as_secs_f64(),
                stdout,
                stderr,
                ..ClientRun::default()
            }
        })
    }
}
