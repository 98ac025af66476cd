//! The dashboard's live checks: the harness's wire checks that need no
//! scenario, run over each client's transcript so far. The server crate only
//! defines the hook ([`LiveChecks`]); the binary, which depends on both the
//! server and the harness, fills it here, so the server never depends on the
//! harness.
//!
//! The checks chosen judge what a client did, not what it has yet to do:
//! a check that says a client "never renewed" or "gave up after a 503"
//! (`auth.token_renewed`, `status.transient_retried`) or compares the output
//! or the export with a case (`files.each_downloaded`, `kickoff.matches_request`,
//! ...) would speak too early on a live run, and is left to `bulkmock judge`.

use std::path::Path;

use bulkmock_harness::adapter::ClientRun;
use bulkmock_harness::checks::{self, Input};
use bulkmock_harness::scenario::{self, Case};
use bulkmock_harness::verify::OutputReport;
use bulkmock_server::Exchange;
use bulkmock_server::dashboard::{LiveCheck, LiveChecks};

/// The checks shown live, in the harness's report order.
pub const LIVE: &[&str] = &[
    "auth.discovery",
    "auth.fresh_jti",
    "auth.assertion_header",
    "auth.assertion_claims",
    "auth.token_request_form",
    "auth.token_reused",
    "auth.no_token_to_other_host",
    "kickoff.accept",
    "kickoff.prefer_async",
    "status.honours_retry_after",
    "status.poll_interval",
    "status.backoff",
    "status.accept_json",
    "files.token_when_required",
    "files.no_token_when_not_required",
    "files.accept_gzip",
    "files.accept_ndjson",
    "etiquette.connection_reuse",
];

/// The harness's checks for one server.
pub struct HarnessChecks {
    fhir_base: String,
    token_url: String,
    /// Scenario-free cases (every `[expect]` at its default), with and without authorization.
    cases: [Case; 2],
}

impl HarnessChecks {
    /// Checks for the server at `fhir_base` whose token endpoint is `token_url`.
    pub fn new(fhir_base: &str, token_url: &str) -> Result<HarnessChecks, String> {
        let case = |auth: bool| -> Result<Case, String> {
            let text = format!("title = \"live checks\"\nrequirements = []\n[server]\nauth = {auth}\n");
            let file = scenario::parse(&text, Path::new("scenarios/live.toml")).map_err(|e| e.to_string())?;
            file.cases.into_iter().next().ok_or_else(|| "the live-check case did not parse".to_string())
        };
        Ok(HarnessChecks {
            fhir_base: fhir_base.to_string(),
            token_url: token_url.to_string(),
            cases: [case(false)?, case(true)?],
        })
    }
}

impl LiveChecks for HarnessChecks {
    fn check(&self, client_id: Option<&str>, exchanges: &[Exchange], auth: bool) -> Vec<LiveCheck> {
        let run = ClientRun::default();
        let output = OutputReport::default();
        // What this server's manifests say (`requiresAccessToken` follows its
        // authorization); no other live check reads the job.
        let job = checks::JobFacts { requires_access_token: Some(auth), ..checks::JobFacts::default() };
        let input = Input {
            case: &self.cases[usize::from(auth)],
            exchanges,
            run: &run,
            output: &output,
            job: Some(&job),
            fhir_base: &self.fhir_base,
            token_url: &self.token_url,
            client_id: client_id.unwrap_or_default(),
            runs: &[],
        };
        LIVE.iter()
            .filter_map(|id| checks::find(id))
            .map(|check| {
                let result = checks::judge(check, &input);
                LiveCheck {
                    id: result.id,
                    title: check.title.to_string(),
                    level: result.level.as_str().to_string(),
                    verdict: result.verdict.as_str().to_string(),
                    message: result.evidence.as_ref().map(|e| e.message.clone()),
                    exchanges: result.evidence.iter().flat_map(|e| e.exchanges.iter().map(|x| x.seq)).collect(),
                }
            })
            .collect()
    }
}

/// Installs the harness's live checks on `state`'s dashboard; the banner line
/// naming the dashboard's URL, when it is on.
pub fn install(state: &bulkmock_server::app::AppState) -> Result<Option<String>, String> {
    if !state.config.dashboard {
        return Ok(None);
    }
    let checks = HarnessChecks::new(&state.fhir_base, &state.token_url())?;
    state.dashboard.set_live_checks(std::sync::Arc::new(checks));
    Ok(banner_line(state))
}

/// The banner line naming the dashboard's URL and who may open it, when it is on.
pub fn banner_line(state: &bulkmock_server::app::AppState) -> Option<String> {
    if !state.config.dashboard {
        return None;
    }
    let secret = if state.config.admin.token.is_some() { "?secret=<admin token> (once)" } else { "" };
    let who = if state.config.admin.any_host { "any host" } else { "loopback only" };
    Some(format!("  dashboard:  {}/_dashboard{secret}  ({who}; --no-dashboard turns it off)", state.origin()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_live_check_exists() {
        for id in LIVE {
            assert!(checks::find(id).is_some(), "{id} is a harness check");
        }
    }

    fn exchange(seq: u64, value: serde_json::Value) -> Exchange {
        let mut base = serde_json::json!({
            "seq": seq, "at_ms": seq * 10, "unix_ms": 1_000_000 + seq * 10, "method": "GET",
            "path": "/fhir/metadata", "headers": {}, "status": 200, "bytes": 0, "duration_ms": 1
        });
        base.as_object_mut().unwrap().extend(value.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn a_file_without_gzip_warns_and_a_token_on_files_passes() {
        let checks = HarnessChecks::new("http://127.0.0.1:1/fhir", "http://127.0.0.1:1/auth/token").unwrap();
        let file = exchange(
            1,
            serde_json::json!({"target": "file", "path": "/fhir/bulkfiles/j/1.Patient.ndjson",
                "headers": {"authorization": "Bearer <abcd1234>"}, "client_id": "c"}),
        );
        let results = checks.check(Some("c"), &[file], true);
        let verdict = |id: &str| results.iter().find(|r| r.id == id).map(|r| r.verdict.clone());
        assert_eq!(verdict("files.accept_gzip").as_deref(), Some("warn"));
        assert_eq!(verdict("files.token_when_required").as_deref(), Some("pass"));
        let gzip = results.iter().find(|r| r.id == "files.accept_gzip").unwrap();
        assert_eq!(gzip.exchanges, vec![1], "the evidence names the exchange");
    }
}
