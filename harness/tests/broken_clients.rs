//! Checks that can fail, and checks that must not: deliberately broken
//! clients, one flaw each, run through the Rust adapter. Each flaw must be
//! caught by the right check, no check outside that family (and the run's
//! outcome and output, which a flaw may also spoil) may fail, and the
//! reference client must pass every MUST and SHOULD check of the same case.
//! Then correct clients that differ from the reference one in manner
//! (parallel, stopping cleanly on a cut body, slow to retry, lenient): each
//! check's exact verdict is asserted, so a check that blames a correct
//! client cannot come back unnoticed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bulkmock_harness::adapter::{Builtin, CaseContext, ClientAdapter, from_fn};
use bulkmock_harness::checks::Verdict;
use bulkmock_harness::report::{CaseResult, CaseVerdict};
use bulkmock_harness::runner::{self, RunOptions};
use bulkmock_harness::scenario;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// One flaw of a client that is otherwise simple but correct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    ReusesJti,
    IgnoresRetryAfter,
    PollsInHotLoop,
    NeverRetries503,
    NeverRenewsToken,
    TokenWhenNotRequired,
    TokenAcrossRedirect,
    KeepsTruncatedFile,
    ExitsZeroAfterFatal,
    DoesNothing,
    /// Sends `_typeFilter` without reading the CapabilityStatement first (CLI-049):
    /// this simple client never reads it, so the flaw needs no code of its own.
    TypeFilterWithoutCapabilities,
    /// Sends several `_type` values as one comma-joined POST entry (CLI-045).
    CommaJoinsPostValues,
    /// Keeps what a server that ignored `_typeFilter` sent, without a word (CLI-048):
    /// this simple client never looks, so the flaw needs no code of its own.
    SilentAboutIgnoredTypeFilter,
    /// Incremental pulls with `_since` = the client's own clock, not the last
    /// manifest's `transactionTime` (CLI-054).
    SinceFromOwnClock,
    /// Incremental pulls that apply changed resources but never the `deleted` entries (CLI-087).
    IgnoresDeletions,
    /// "Incremental" pulls that export everything again, never sending `_since` (CLI-054).
    ExportsEverythingAgain,
    /// Group pulls with `_since` only: members that joined never bring their older
    /// data, members that left keep theirs (CLI-054). This simple client never
    /// reads the Group, so the flaw needs no code of its own.
    IgnoresGroupMembership,
    /// Ends with exit 1 before its first request (a key file it cannot read).
    CrashesAtStart,
    /// Polls every 200 ms without Retry-After, never backing off (CLI-061):
    /// this simple client's own manner, so the flaw needs no code of its own.
    FixedPollInterval,
    /// Fetches a new token for every request, though each lives 300 s (CLI-027).
    TokenPerRequest,
    /// No flaw: a correct client, in the manner its [`Manner`] says.
    None,
}

/// Ways a correct client may differ from the simplest one. None is a flaw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manner {
    /// One request at a time.
    Simple,
    /// Every file of the manifest downloaded at once; a refused token renewed
    /// once for all the requests it was refused on.
    Parallel,
    /// A cut body detected, reported, and the run ended with exit 1 (no retry).
    StopsOnCutBody,
    /// A transient answer retried only after 60 s (longer than the case allows).
    SlowRetries,
    /// `Prefer: handling=lenient` on the kick-off, with the case's `_since`.
    Lenient,
    /// The error files downloaded too; the server's errors reported with exit 1.
    ReportsServerErrors,
    /// A token renewed whenever it has less than a minute left (every request,
    /// when tokens live 2 s).
    RenewsAheadOfExpiry,
}

struct Flawed {
    flaw: Flaw,
    manner: Manner,
    ctx: CaseContext,
    http: reqwest::Client,
    /// The current token; held while one is fetched, so parallel requests share a renewal.
    token: tokio::sync::Mutex<Option<String>>,
    tokens_fetched: AtomicU32,
}

impl Flawed {
    fn new(flaw: Flaw, manner: Manner, ctx: CaseContext) -> Flawed {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Flawed { flaw, manner, ctx, http, token: Default::default(), tokens_fetched: AtomicU32::new(0) }
    }

    async fn token(&self) -> Result<String, String> {
        let mut current = self.token.lock().await;
        // Renewing ahead of expiry: with short tokens, before every request.
        let ahead = self.manner == Manner::RenewsAheadOfExpiry || self.flaw == Flaw::TokenPerRequest;
        if let Some(t) = current.as_ref().filter(|_| !ahead) {
            return Ok(t.clone());
        }
        let token = self.fetch_token().await?;
        *current = Some(token.clone());
        Ok(token)
    }

    /// Forgets `refused` unless a renewal already replaced it.
    async fn refused(&self, refused: &str) {
        let mut current = self.token.lock().await;
        if current.as_deref() == Some(refused) {
            *current = None;
        }
    }

    async fn fetch_token(&self) -> Result<String, String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let fetched = self.tokens_fetched.fetch_add(1, Ordering::SeqCst) + 1;
        let jti = if self.flaw == Flaw::ReusesJti {
            "always-the-same".to_string()
        } else {
            // Unique across the runs of an incremental case too (each run is a new client).
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            format!("jti-{nanos}-{fetched}")
        };
        let (alg, key) = match self.ctx.alg.as_str() {
            "RS384" => (Algorithm::RS384, EncodingKey::from_rsa_pem(self.ctx.private_key_pem.as_bytes())),
            _ => (Algorithm::ES384, EncodingKey::from_ec_pem(self.ctx.private_key_pem.as_bytes())),
        };
        let mut header = Header::new(alg);
        header.kid = Some(self.ctx.kid.clone());
        header.typ = Some("JWT".into());
        let claims = json!({"iss": self.ctx.client_id, "sub": self.ctx.client_id, "aud": self.ctx.token_url,
            "exp": now + 240, "jti": jti});
        let assertion =
            jsonwebtoken::encode(&header, &claims, &key.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let r = self
            .http
            .post(&self.ctx.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion.as_str()),
                ("scope", "system/*.rs"),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let doc: Value = r.json().await.map_err(|e| e.to_string())?;
        Ok(doc["access_token"].as_str().ok_or(format!("no token: {doc}"))?.to_string())
    }

    /// GET with the token; a 401 renews it once (unless the flaw says never).
    async fn get(&self, url: &str, with_token: bool) -> Result<reqwest::Response, String> {
        for _ in 0..3 {
            let prefer =
                if self.manner == Manner::Lenient { "respond-async, handling=lenient" } else { "respond-async" };
            let mut req = self
                .http
                .get(url)
                .header("Accept", "application/fhir+json")
                .header("Prefer", prefer)
                .header("Accept-Encoding", "gzip");
            let token = if with_token { Some(self.token().await?) } else { None };
            if let Some(token) = &token {
                req = req.bearer_auth(token);
            }
            let r = req.send().await.map_err(|e| e.to_string())?;
            if r.status() == 401 && self.flaw != Flaw::NeverRenewsToken {
                if let Some(token) = &token {
                    self.refused(token).await;
                }
                continue;
            }
            if r.status().is_redirection() {
                let location = r.headers()["location"].to_str().unwrap().to_string();
                // A correct client drops the token on another host; this flaw keeps it.
                let keep = with_token && self.flaw == Flaw::TokenAcrossRedirect;
                let mut req = self.http.get(&location).header("Accept-Encoding", "gzip");
                if keep {
                    req = req.bearer_auth(self.token().await?);
                }
                return req.send().await.map_err(|e| e.to_string());
            }
            return Ok(r);
        }
        Err("401 three times".into())
    }

    async fn run(self) -> Result<i32, String> {
        if self.flaw == Flaw::DoesNothing {
            return Ok(0);
        }
        if self.flaw == Flaw::CrashesAtStart {
            return Err("cannot read the private key".into());
        }
        let mut params: Vec<(&str, String)> =
            self.ctx.request.type_filters.iter().map(|f| ("_typeFilter", f.clone())).collect();
        let incremental_run = self.ctx.variables.get("run").is_some_and(|r| r == "incremental");
        if incremental_run {
            // A correct client continues from the last transactionTime, which the harness also passes as {since}.
            let since = match self.flaw {
                Flaw::SinceFromOwnClock => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                    Some(bulkmock_server::data::clock::instant_string(now as i64))
                }
                Flaw::ExportsEverythingAgain => None,
                _ => self.ctx.variables.get("since").cloned(),
            };
            params.extend(since.map(|s| ("_since", s)));
        } else {
            params.extend(self.ctx.request.since.clone().map(|s| ("_since", s)));
        }
        let path = match &self.ctx.request.group {
            Some(group) => format!("Group/{group}/$export"),
            None => "Patient/$export".to_string(),
        };
        let kickoff = reqwest::Url::parse_with_params(&format!("{}/{path}", self.ctx.fhir_base), params)
            .map_err(|e| e.to_string())?;
        let r = if self.flaw == Flaw::CommaJoinsPostValues {
            let body = json!({"resourceType": "Parameters", "parameter": [
                {"name": "_type", "valueString": "Patient,Observation"}
            ]});
            let token = self.token().await?;
            self.http
                .post(kickoff.as_str())
                .bearer_auth(token)
                .header("Accept", "application/fhir+json")
                .header("Prefer", "respond-async")
                .header("Content-Type", "application/fhir+json")
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?
        } else {
            self.get(kickoff.as_str(), true).await?
        };
        if r.status() != 202 {
            let code = if self.flaw == Flaw::ExitsZeroAfterFatal { 0 } else { 1 };
            return if code == 0 { Ok(0) } else { Err(format!("kick-off answered {}", r.status())) };
        }
        let status_url = r.headers()["content-location"].to_str().unwrap().to_string();
        let manifest: Value = loop {
            let r = self.get(&status_url, true).await?;
            match r.status().as_u16() {
                200 => break r.json().await.map_err(|e| e.to_string())?,
                202 | 429 | 503 => {
                    if r.status() == 503 && self.flaw == Flaw::NeverRetries503 {
                        return Err("503 on status: giving up".into());
                    }
                    if r.status() == 503 && self.manner == Manner::SlowRetries {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        continue;
                    }
                    let wait = bulkmock_client::retry_after(r.headers()).unwrap_or(Duration::from_millis(200));
                    let wait = match self.flaw {
                        Flaw::IgnoresRetryAfter => Duration::from_millis(20),
                        Flaw::PollsInHotLoop => Duration::ZERO,
                        _ => wait.max(Duration::from_millis(200)),
                    };
                    tokio::time::sleep(wait).await;
                }
                s => return Err(format!("status answered {s}")),
            }
        };
        let requires_token = manifest["requiresAccessToken"].as_bool().unwrap_or(true);
        let send_token = requires_token || self.flaw == Flaw::TokenWhenNotRequired;
        // An incremental case's folder is the client's state: each run's export goes
        // to a side folder and is applied to it.
        let incremental = self.ctx.incremental();
        let delta = self.ctx.out_dir.join(".delta");
        let into = if incremental { delta.clone() } else { self.ctx.out_dir.clone() };
        for (array, folder) in [("output", into.clone()), ("deleted", into.join("deleted"))] {
            if array == "deleted" && !incremental {
                continue;
            }
            std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
            let files = manifest[array].as_array().cloned().unwrap_or_default();
            let urls: Vec<&str> = files.iter().map(|f| f["url"].as_str().unwrap()).collect();
            let bodies = if self.manner == Manner::Parallel {
                futures_util::future::try_join_all(urls.iter().map(|url| self.download(url, send_token))).await?
            } else {
                let mut bodies = Vec::new();
                for url in &urls {
                    bodies.push(self.download(url, send_token).await?);
                }
                bodies
            };
            for (i, (mut body, mut gzip)) in bodies.into_iter().enumerate() {
                if incremental && gzip {
                    // Applying reads plain NDJSON.
                    let mut plain = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&body[..]), &mut plain)
                        .map_err(|e| e.to_string())?;
                    (body, gzip) = (plain, false);
                }
                let name = if gzip { format!("{i}.ndjson.gz") } else { format!("{i}.ndjson") };
                std::fs::write(folder.join(name), body).map_err(|e| e.to_string())?;
            }
        }
        if incremental {
            if self.flaw == Flaw::IgnoresDeletions {
                std::fs::remove_dir_all(delta.join("deleted")).map_err(|e| e.to_string())?;
            }
            if self.flaw == Flaw::ExportsEverythingAgain {
                // Everything again: the state is replaced.
                for entry in std::fs::read_dir(&self.ctx.out_dir).map_err(|e| e.to_string())?.flatten() {
                    if entry.path().extension().is_some_and(|x| x == "ndjson") {
                        std::fs::remove_file(entry.path()).map_err(|e| e.to_string())?;
                    }
                }
            }
            bulkmock_client::incremental::apply(&self.ctx.out_dir, &delta).map_err(|e| e.to_string())?;
            std::fs::remove_dir_all(&delta).map_err(|e| e.to_string())?;
        }
        let errors = manifest["error"].as_array().cloned().unwrap_or_default();
        if self.manner == Manner::ReportsServerErrors && !errors.is_empty() {
            let folder = self.ctx.out_dir.join("error");
            std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
            for (i, file) in errors.iter().enumerate() {
                let (body, gzip) = self.download(file["url"].as_str().unwrap(), send_token).await?;
                let name = if gzip { format!("{i}.ndjson.gz") } else { format!("{i}.ndjson") };
                std::fs::write(folder.join(name), body).map_err(|e| e.to_string())?;
            }
            let _ = self.http.delete(&status_url).bearer_auth(self.token().await?).send().await;
            return Err(format!("the export completed with {} error files from the server", errors.len()));
        }
        let _ = self.http.delete(&status_url).bearer_auth(self.token().await?).send().await;
        Ok(0)
    }

    /// A download; a cut body is fetched again, except by the flaw that keeps it.
    async fn download(&self, url: &str, with_token: bool) -> Result<(Vec<u8>, bool), String> {
        for _ in 0..3 {
            let mut r = self.get(url, with_token).await?;
            if !r.status().is_success() {
                return Err(format!("{url}: {}", r.status()));
            }
            let gzip = r.headers().get("content-encoding").is_some_and(|v| v == "gzip");
            let mut body = Vec::new();
            let mut cut = false;
            loop {
                match r.chunk().await {
                    Ok(Some(c)) => body.extend_from_slice(&c),
                    Ok(None) => break,
                    Err(_) => {
                        cut = true;
                        break;
                    }
                }
            }
            if !cut || self.flaw == Flaw::KeepsTruncatedFile {
                return Ok((body, gzip));
            }
            if self.manner == Manner::StopsOnCutBody {
                return Err(format!("{url}: the body was cut after {} bytes; stopping", body.len()));
            }
        }
        Err(format!("{url}: cut three times"))
    }
}

fn flawed(flaw: Flaw) -> impl ClientAdapter {
    from_fn(
        &format!("{flaw:?}"),
        move |ctx: CaseContext| async move { Flawed::new(flaw, Manner::Simple, ctx).run().await },
    )
}

/// A correct client in `manner`.
fn correct(manner: Manner) -> impl ClientAdapter {
    from_fn(
        &format!("{manner:?}"),
        move |ctx: CaseContext| async move { Flawed::new(Flaw::None, manner, ctx).run().await },
    )
}

async fn run_one(text: &str, adapter: Arc<dyn ClientAdapter>) -> CaseResult {
    let file = scenario::parse(text, Path::new("scenarios/selftest/case.toml")).expect("a valid scenario");
    let options = RunOptions { jobs: 1, ..RunOptions::default() };
    let report = runner::run(file.cases, adapter, &options, &|_| {}).await.expect("the run starts");
    report.cases.into_iter().next().expect("one case")
}

fn verdict(case: &CaseResult, id: &str) -> Verdict {
    case.checks.iter().find(|c| c.id == id).map_or(Verdict::Skip, |c| c.verdict)
}

/// The flawed client is caught by `check`, nothing outside its family (or the
/// outcome and output) fails or warns, and the reference client passes.
async fn caught(flaw: Flaw, scenario: &str, check: &str, expected: Verdict) {
    caught_also(flaw, scenario, check, expected, &[]).await
}

/// Like [`caught`], where the flaw's consequences reach families in `also` too.
async fn caught_also(flaw: Flaw, scenario: &str, check: &str, expected: Verdict, also: &[&str]) {
    let bad = run_one(scenario, Arc::new(flawed(flaw))).await;
    assert_eq!(verdict(&bad, check), expected, "{flaw:?} must be caught by {check}: {:#?}", bad.checks);
    let family = check.split('.').next().unwrap();
    for c in &bad.checks {
        let allowed = [family, "outcome", "output"].iter().chain(also).any(|f| c.id.starts_with(&format!("{f}.")));
        assert!(
            allowed || !matches!(c.verdict, Verdict::Fail | Verdict::Warn),
            "{flaw:?} also tripped {} ({:?}): {:?}",
            c.id,
            c.verdict,
            c.evidence
        );
    }
    let good = run_one(scenario, Arc::new(Builtin::default())).await;
    for c in &good.checks {
        assert!(
            !matches!(c.verdict, Verdict::Fail | Verdict::Warn),
            "the reference client must pass {} in the {flaw:?} case: {:?}",
            c.id,
            c.evidence
        );
    }
    assert_eq!(verdict(&good, check), Verdict::Pass, "the {flaw:?} case must exercise {check}");
}

const BASE: &str = "title = \"self-test\"\n[server]\npatients = 4\n[client]\nlevel = \"patient\"\n[expect]\npoll_floor_ms = 100\nmax_seconds = 20\n";

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_jti_is_caught() {
    let s = with("[[fault]]\non = \"status\"\nwhen = { nth = 1 }\nfault = { kind = \"revoke\" }\n");
    caught(Flaw::ReusesJti, &s, "auth.fresh_jti", Verdict::Fail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_token_for_every_request_is_caught() {
    // One revocation, so that a correct client needs a second token too.
    let s = with("[[fault]]\non = \"status\"\nwhen = { nth = 1 }\nfault = { kind = \"revoke\" }\n");
    caught(Flaw::TokenPerRequest, &s, "auth.token_reused", Verdict::Warn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignoring_retry_after_is_caught() {
    let s = with(
        "[[fault]]\non = \"status\"\ntimes = 2\nfault = { kind = \"respond\", status = 202, body = \"empty\", retry_after_date_s = 3 }\n",
    );
    caught(Flaw::IgnoresRetryAfter, &s, "status.honours_retry_after", Verdict::Warn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_polling_loop_is_caught() {
    let s = BASE.replace("patients = 4\n", "patients = 4\njob_polls = 3\n");
    caught(Flaw::PollsInHotLoop, &s, "status.poll_interval", Verdict::Warn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_retrying_a_503_is_caught() {
    let s = with(
        "[[fault]]\non = \"status\"\ntimes = 1\nfault = { kind = \"respond\", status = 503, body = \"transient\", retry_after_s = 1 }\n",
    );
    caught(Flaw::NeverRetries503, &s, "status.transient_retried", Verdict::Fail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_renewing_a_token_is_caught() {
    let s = with("[[fault]]\non = \"status\"\nwhen = { nth = 1 }\nfault = { kind = \"revoke\" }\n");
    caught(Flaw::NeverRenewsToken, &s, "auth.token_renewed", Verdict::Fail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_on_capability_urls_is_caught() {
    let s = with("[[fault]]\non = \"status\"\nfault = { kind = \"capability_urls\", ttl_s = 60 }\n");
    caught(Flaw::TokenWhenNotRequired, &s, "files.no_token_when_not_required", Verdict::Fail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_across_a_redirect_is_caught() {
    let s = with("[[fault]]\non = \"file\"\ntimes = 1\nfault = { kind = \"redirect\" }\n");
    // The redirect target is a capability URL: the token there is also one sent
    // where requiresAccessToken does not hold, which the files family sees.
    caught_also(Flaw::TokenAcrossRedirect, &s, "auth.no_token_to_other_host", Verdict::Warn, &["files"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeping_a_truncated_file_is_caught() {
    let s = with(
        "[[fault]]\non = \"file\"\nresource_type = \"Observation\"\ntimes = 1\nfault = { kind = \"truncate\", fraction = 0.5, at_line_end = true }\n",
    );
    // The cut file was never received whole: the files family sees that too.
    caught_also(Flaw::KeepsTruncatedFile, &s, "output.matches_export", Verdict::Fail, &["files"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exiting_zero_after_a_fatal_error_is_caught() {
    let s = with(
        "[[fault]]\non = \"kickoff\"\nfault = { kind = \"respond\", status = 500, body = \"outcome\", code = \"processing\" }\n",
    )
    .replace("[expect]\n", "[expect]\noutcome = \"fail_cleanly\"\n");
    caught(Flaw::ExitsZeroAfterFatal, &s, "outcome.expected", Verdict::Fail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exiting_zero_without_exporting_is_caught() {
    caught(Flaw::DoesNothing, BASE, "output.matches_export", Verdict::Fail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_filter_sent_without_reading_the_capability_statement_is_caught() {
    let s = BASE
        .replace("level = \"patient\"\n", "level = \"patient\"\ntype_filters = [\"Observation?category=laboratory\"]\n")
        .replace("[expect]\n", "[expect]\nchecks = [\"kickoff.type_filter_capabilities\"]\n");
    caught(Flaw::TypeFilterWithoutCapabilities, &s, "kickoff.type_filter_capabilities", Verdict::Warn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_about_an_ignored_type_filter_is_caught() {
    let s = BASE.replace("patients = 4\n", "patients = 4\nquirks = [\"ignores-type-filter\"]\n").replace(
        "level = \"patient\"\n",
        "level = \"patient\"\ntype_filters = [\"Observation?category=laboratory\"]\n",
    );
    caught(Flaw::SilentAboutIgnoredTypeFilter, &s, "output.type_filter_ignored", Verdict::Warn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comma_joined_post_values_are_caught() {
    let s = BASE
        .replace("level = \"patient\"\n", "level = \"patient\"\ntypes = [\"Patient\", \"Observation\"]\npost = true\n")
        .replace("[expect]\n", "[expect]\nchecks = [\"kickoff.repeated_parameters\"]\n");
    caught(Flaw::CommaJoinsPostValues, &s, "kickoff.repeated_parameters", Verdict::Warn).await;
}

/// A patient-level case kept up to date over one incremental run, after four revisions.
fn incremental() -> String {
    BASE.replace("patients = 4\n", "patients = 20\n").replace("[expect]\n", "[incremental]\nrevisions = 4\n[expect]\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_from_the_clients_own_clock_is_caught() {
    // The server's transactionTime lies behind the client's clock: changes are missed.
    caught(Flaw::SinceFromOwnClock, &incremental(), "kickoff.since_transaction_time", Verdict::Warn).await;
    let bad = run_one(&incremental(), Arc::new(flawed(Flaw::SinceFromOwnClock))).await;
    assert_eq!(verdict(&bad, "output.matches_export"), Verdict::Fail, "the changes were missed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignoring_deletions_in_an_incremental_pull_is_caught() {
    caught(Flaw::IgnoresDeletions, &incremental(), "output.deleted_not_added", Verdict::Fail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_everything_again_instead_of_since_is_caught() {
    caught(Flaw::ExportsEverythingAgain, &incremental(), "kickoff.since_transaction_time", Verdict::Warn).await;
    let bad = run_one(&incremental(), Arc::new(flawed(Flaw::ExportsEverythingAgain))).await;
    assert_eq!(verdict(&bad, "output.matches_export"), Verdict::Pass, "the state itself is right");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_kept_up_to_date_without_following_its_membership_is_caught() {
    let s = BASE
        .replace("patients = 4\n", "patients = 80\n")
        .replace("level = \"patient\"\n", "level = \"group\"\ngroup = \"diabetes-cohort\"\n")
        .replace("[expect]\n", "[incremental]\nrevisions = 8\n[expect]\n");
    caught(Flaw::IgnoresGroupMembership, &s, "output.matches_export", Verdict::Fail).await;
    let bad = run_one(&s, Arc::new(flawed(Flaw::IgnoresGroupMembership))).await;
    let output = &bad.outcome.output;
    assert!(output.missing > 0 && output.extra > 0, "joined members' data missing, departed members' kept: {output:?}");
    assert_eq!(verdict(&bad, "kickoff.since_transaction_time"), Verdict::Pass, "its _since itself is right");
}

/// Every check of `case` has the verdict `expected` names, or else passed or
/// was not exercised: a correct client is blamed for nothing else.
fn assert_verdicts(client: &str, case: &CaseResult, expected: &[(&str, Verdict)]) {
    for c in &case.checks {
        let want = expected.iter().find(|(id, _)| *id == c.id).map(|(_, v)| *v);
        match want {
            Some(v) => assert_eq!(c.verdict, v, "{client}: {} must be {v:?}: {:?}", c.id, c.evidence),
            // An unmet MAY (information) is no blame.
            None => assert!(
                matches!(c.verdict, Verdict::Pass | Verdict::Skip | Verdict::Info),
                "{client} is correct, yet {} is {:?}: {:?}",
                c.id,
                c.verdict,
                c.evidence
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_client_renewing_once_for_many_refusals_is_not_a_loop() {
    // Many small files downloaded at once; the token is revoked on the first
    // file request, so every request in flight is refused with it.
    let s = with("[[fault]]\non = \"file\"\nwhen = { nth = 1 }\nfault = { kind = \"revoke\" }\n")
        .replace("patients = 4\n", "patients = 4\nresources_per_file = 1\n");
    // How many requests are in flight when the token is revoked depends on
    // scheduling: every run must pass, and one of three must show more
    // refusals than a loop allows (on a loaded machine a run may see fewer).
    let mut seen = Vec::new();
    for _ in 0..3 {
        let case = run_one(&s, Arc::new(correct(Manner::Parallel))).await;
        assert_verdicts("a parallel client", &case, &[("auth.token_renewed", Verdict::Pass)]);
        assert_eq!(case.verdict, CaseVerdict::Pass);
        let refusals = case.exchanges.iter().filter(|e| e.status == 401).count();
        if refusals > 5 {
            return;
        }
        seen.push(refusals);
    }
    panic!("the case must refuse more requests than a loop allows; refusals in three runs: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reports_a_cut_body_and_stops_meets_every_must() {
    let cut = "[[fault]]\non = \"file\"\nresource_type = \"Observation\"\ntimes = 1\nfault = { kind = \"truncate\", fraction = 0.5 }\n";
    // Completing is a recovery the guide allows (retry or error, CLI-092/093).
    let s = with(cut)
        .replace("[expect]\n", "[expect]\nrecovery = { level = \"may\", requirements = [\"CLI-092\", \"CLI-093\"] }\n");
    let case = run_one(&s, Arc::new(correct(Manner::StopsOnCutBody))).await;
    assert_verdicts(
        "a client that stops on a cut body",
        &case,
        &[("outcome.expected", Verdict::Pass), ("outcome.recovered", Verdict::Info)],
    );
    let recovered = case.checks.iter().find(|c| c.id == "outcome.recovered").unwrap();
    assert_eq!(recovered.requirements, ["CLI-092", "CLI-093"], "the recovery cites its own requirements");
    assert!(recovered.evidence.as_ref().unwrap().message.contains("the body was cut"), "{recovered:?}");
    assert_eq!(case.verdict, CaseVerdict::Pass, "an unmet MAY is information only");
    // Where completing is required, the same run fails the MUST.
    let required = run_one(&with(cut), Arc::new(correct(Manner::StopsOnCutBody))).await;
    assert_eq!(verdict(&required, "outcome.expected"), Verdict::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slower_than_the_deadline_times_out_with_a_true_account() {
    let s = with(
        "[[fault]]\non = \"status\"\ntimes = 1\nfault = { kind = \"respond\", status = 503, body = \"transient\" }\n",
    )
    .replace("max_seconds = 20", "max_seconds = 2");
    let case = run_one(&s, Arc::new(correct(Manner::SlowRetries))).await;
    assert_eq!(case.verdict, CaseVerdict::Timeout);
    assert_verdicts("a slow client", &case, &[]);
    let skipped = |id: &str| {
        let c = case.checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.verdict, Verdict::Skip, "{id}: {c:?}");
        c.evidence.as_ref().unwrap().message.clone()
    };
    let outcome = skipped("outcome.expected");
    assert!(
        outcome.contains("deadline (max_seconds = 2") && outcome.contains("-> 503"),
        "names its last exchange: {outcome}"
    );
    let retried = skipped("status.transient_retried");
    assert!(retried.contains("stopped the client at the case's deadline"), "never 'gave up': {retried}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lenient_kickoff_the_server_accepts_is_an_ordinary_export() {
    // The server refuses a future _since (a case set up to fail), unless the
    // client asks for lenient handling: then it ignores it and reports it.
    let s = BASE
        .replace("level = \"patient\"\n", "level = \"patient\"\nsince = \"2099-01-01T00:00:00Z\"\n")
        .replace("[expect]\n", "[expect]\noutcome = \"fail_cleanly\"\nmax_requests = 10\n");
    let case = run_one(&s, Arc::new(correct(Manner::Lenient))).await;
    assert_verdicts("a lenient client", &case, &[("outcome.expected", Verdict::Skip)]);
    for id in ["kickoff.matches_request", "etiquette.request_bound", "output.matches_export"] {
        assert_eq!(verdict(&case, id), Verdict::Pass, "{id}");
    }
    assert_eq!(case.verdict, CaseVerdict::Pass);
    // Without lenient handling the same client meets the refusal and stops.
    let strict = run_one(&s, Arc::new(correct(Manner::Simple))).await;
    assert_eq!(verdict(&strict, "outcome.expected"), Verdict::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_reported_with_a_non_zero_exit_is_judged_by_its_files() {
    let s = with("[[fault]]\non = \"status\"\nfault = { kind = \"manifest\", variant = \"partial_success\" }\n")
        .replace("[expect]\n", "[expect]\noutcome = \"partial\"\n");
    let case = run_one(&s, Arc::new(correct(Manner::ReportsServerErrors))).await;
    assert_ne!(case.outcome.exit_code, Some(0));
    assert_verdicts("a client reporting the server's errors", &case, &[]);
    // Its files are judged, not skipped for the exit code.
    for id in ["outcome.expected", "output.matches_export", "files.each_downloaded"] {
        assert_eq!(verdict(&case, id), Verdict::Pass, "{id}");
    }
    assert_eq!(case.outcome.output.errors.missing, 0, "the error files were kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_a_two_second_token_ahead_of_expiry_is_no_needless_renewal() {
    let s = BASE.replace("patients = 4\n", "patients = 4\ntoken_lifetime_s = 2\njob_polls = 2\n");
    let case = run_one(&s, Arc::new(correct(Manner::RenewsAheadOfExpiry))).await;
    let tokens = case.exchanges.iter().filter(|e| e.url.ends_with("/token")).count();
    assert!(tokens > 2, "a token per request: {tokens}");
    assert_verdicts("a client renewing ahead of expiry", &case, &[("auth.token_reused", Verdict::Pass)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_before_meeting_the_case_has_not_failed_cleanly() {
    // Stopping is a clean failure only as an answer to what the case sets up.
    let fatal = with(
        "[[fault]]\non = \"kickoff\"\nfault = { kind = \"respond\", status = 500, body = \"outcome\", code = \"processing\" }\n",
    )
    .replace("[expect]\n", "[expect]\noutcome = \"fail_cleanly\"\n");
    let cut = with(
        "[[fault]]\non = \"file\"\nresource_type = \"Observation\"\ntimes = 1\nfault = { kind = \"truncate\", fraction = 0.5 }\n",
    )
    .replace("[expect]\n", "[expect]\nrecovery = { level = \"may\", requirements = [\"CLI-092\"] }\n");
    for s in [fatal, cut] {
        let case = run_one(&s, Arc::new(flawed(Flaw::CrashesAtStart))).await;
        assert_eq!(verdict(&case, "outcome.expected"), Verdict::Fail, "{:?}", case.checks);
        let evidence = &case.checks.iter().find(|c| c.id == "outcome.expected").unwrap().evidence;
        assert!(evidence.as_ref().unwrap().message.contains("cannot read the private key"), "{evidence:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeping_lines_a_server_repeated_is_a_warning_not_corruption() {
    let s = with(
        "[[fault]]\non = \"file\"\nresource_type = \"Observation\"\nfault = { kind = \"content\", mutation = \"duplicate_line\", line = 2 }\n",
    )
    .replace("[expect]\n", "[expect]\noutcome = \"fail_cleanly\"\noutput = \"any\"\n");
    let case = run_one(&s, Arc::new(correct(Manner::Simple))).await;
    assert_eq!(case.outcome.exit_code, Some(0), "this simple client checks no counts");
    assert_verdicts("a client keeping repeated lines", &case, &[("outcome.expected", Verdict::Warn)]);
    let check = case.checks.iter().find(|c| c.id == "outcome.expected").unwrap();
    assert_eq!(check.requirements, ["CLI-092"]);
    assert!(check.evidence.as_ref().unwrap().message.contains("twice, as the server sent them"), "{check:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_poll_interval_is_no_backoff() {
    let s = BASE.replace("patients = 4\n", "patients = 4\njob_polls = 4\n");
    caught(Flaw::FixedPollInterval, &s, "status.backoff", Verdict::Warn).await;
}
