//! File downloads: the token rule, gzip, every file fetched to completion.

use std::collections::BTreeMap;

use super::wire::{Route, file_name, has_token, host_of, is_capability, request_header, route, whole_body};
use super::{Check, Finding, Input, Level};
use crate::scenario::ExpectedOutcome;
use bulkmock_server::Exchange;

/// The family's checks.
pub const CHECKS: &[Check] = &[
    Check {
        id: "files.token_when_required",
        title: "the token on every file and attachment request when requiresAccessToken is true",
        requirements: &["CLI-081", "CLI-030", "CLI-091"],
        level: Level::Must,
        always: true,
        run: token_when_required,
    },
    Check {
        id: "files.no_token_when_not_required",
        title: "no token on file requests when requiresAccessToken is false",
        requirements: &["CLI-082", "CLI-091"],
        level: Level::Must,
        always: true,
        run: no_token_when_not_required,
    },
    Check {
        id: "files.accept_gzip",
        title: "file requests send Accept-Encoding with gzip",
        requirements: &["CLI-083"],
        level: Level::Should,
        always: true,
        run: accept_gzip,
    },
    Check {
        id: "files.accept_ndjson",
        title: "an Accept on file requests, when sent, is application/fhir+ndjson",
        requirements: &["CLI-085"],
        level: Level::May,
        always: true,
        run: accept_ndjson,
    },
    Check {
        id: "files.each_downloaded",
        title: "every output, deleted and error file is downloaded to completion (resumes allowed)",
        requirements: &["CLI-086", "CLI-093"],
        level: Level::Must,
        always: true,
        run: each_downloaded,
    },
    Check {
        id: "files.no_needless_redownload",
        title: "a file received whole is not downloaded again",
        requirements: &["CLI-086"],
        level: Level::May,
        always: true,
        run: no_needless_redownload,
    },
];

fn own_file_requests<'a>(input: &'a Input) -> impl Iterator<Item = &'a Exchange> {
    let own = host_of(input.fhir_base);
    input.exchanges.iter().filter(move |e| {
        matches!(route(e), Some(Route::File | Route::Attachment)) && request_header(e, "host").is_none_or(|h| h == own)
    })
}

/// Why the token rules on files are not judged when the manifest's
/// `requiresAccessToken` is unknown (the scenario's auth is no stand-in for it:
/// through a proxy the upstream's manifest decides).
const REQUIRES_TOKEN_UNKNOWN: &str =
    "what the manifest said in requiresAccessToken is unknown (no manifest with it was seen): not judged";

fn token_when_required(input: &Input) -> Finding {
    match input.requires_access_token() {
        None => return Finding::skip(REQUIRES_TOKEN_UNKNOWN),
        Some(false) => return Finding::skip("the manifest said requiresAccessToken: false"),
        Some(true) => {}
    }
    let mut any = false;
    for e in own_file_requests(input).filter(|e| !is_capability(e)) {
        any = true;
        if !has_token(e) {
            return Finding::miss(
                "a file request went without the bearer token although the manifest requires it",
                [e],
            );
        }
    }
    if any { Finding::Pass } else { Finding::skip("no file request needed a token") }
}

fn no_token_when_not_required(input: &Input) -> Finding {
    let mut any = false;
    let capability_urls: Vec<&Exchange> = input.exchanges.iter().filter(|e| is_capability(e)).collect();
    let not_required = input.requires_access_token() == Some(false);
    for e in capability_urls.iter().copied().chain(own_file_requests(input).filter(|_| not_required)) {
        any = true;
        if has_token(e) {
            return Finding::miss(
                "the bearer token was sent on a file request although requiresAccessToken is false",
                [e],
            );
        }
    }
    match (any, input.requires_access_token()) {
        (true, _) => Finding::Pass,
        (false, None) => Finding::skip(REQUIRES_TOKEN_UNKNOWN),
        (false, Some(_)) => Finding::skip("every file required the token"),
    }
}

fn accept_gzip(input: &Input) -> Finding {
    let mut first: BTreeMap<&str, &Exchange> = BTreeMap::new();
    for e in input.exchanges.iter().filter(|e| route(e) == Some(Route::File)) {
        first.entry(file_name(e)).or_insert(e);
    }
    if first.is_empty() {
        return Finding::skip("no file request");
    }
    match first.values().find(|e| !request_header(e, "accept-encoding").is_some_and(|v| v.contains("gzip"))) {
        Some(e) => Finding::miss(
            match request_header(e, "accept-encoding") {
                Some(v) => format!("file requested with Accept-Encoding: {v}, without gzip"),
                None => "file requested without Accept-Encoding (gzip not offered)".to_string(),
            },
            [*e],
        ),
        None => Finding::Pass,
    }
}

fn each_downloaded(input: &Input) -> Finding {
    let Some(job) = input.job else { return Finding::skip("no export was started") };
    if input.case.scenario.expect.outcome == ExpectedOutcome::FailCleanly {
        return Finding::skip("the case expects the client to stop");
    }
    if input.case.scenario.expect.output != crate::scenario::OutputExpectation::Export {
        return Finding::skip("the manifest the client saw does not list the job's files");
    }
    if !super::reported_data(input) {
        return Finding::skip("the client did not finish");
    }
    // The job's own files: in an incremental case, earlier jobs name their files alike.
    let folder = format!("/{}/", job.id);
    let requests: Vec<&Exchange> = input
        .exchanges
        .iter()
        .filter(|e| route(e) == Some(Route::File) && (job.id.is_empty() || e.path.contains(&folder)))
        .collect();
    let mut missing = Vec::new();
    for name in &job.files {
        let of_file: Vec<&&Exchange> = requests.iter().filter(|e| file_name(e) == name).collect();
        // Whole: a full 200, or a 206 that completed the file after an earlier cut.
        let complete = of_file.iter().any(|e| whole_body(e));
        if !complete {
            missing.push((name.as_str(), of_file.last().copied().copied()));
        }
    }
    if missing.is_empty() {
        return Finding::Pass;
    }
    let names: Vec<&str> = missing.iter().map(|(n, _)| *n).collect();
    Finding::miss(
        format!("{} of {} files were never received whole: {}", missing.len(), job.files.len(), names.join(", ")),
        missing.iter().filter_map(|(_, e)| *e),
    )
}

fn no_needless_redownload(input: &Input) -> Finding {
    let mut done: BTreeMap<&str, &Exchange> = BTreeMap::new();
    let mut any = false;
    for e in input.exchanges.iter().filter(|e| route(e) == Some(Route::File)) {
        any = true;
        // The job's folder and the file's name: each job of a case names its files alike.
        let name = job_file(e);
        if let Some(first) = done.get(name) {
            return Finding::miss(format!("{name} was received whole, then requested again"), [*first, e]);
        }
        if e.status == 200 && e.fault.is_none() && whole_body(e) && request_header(e, "range").is_none() {
            done.insert(name, e);
        }
    }
    if any { Finding::Pass } else { Finding::skip("no file request") }
}

fn accept_ndjson(input: &Input) -> Finding {
    let sent: Vec<&Exchange> = input
        .exchanges
        .iter()
        .filter(|e| route(e) == Some(Route::File) && request_header(e, "accept").is_some())
        .collect();
    if sent.is_empty() {
        return Finding::skip("no file request sent Accept (it is optional)");
    }
    let fits = |a: &str| a.contains("application/fhir+ndjson") || a.contains("*/*") || a.contains("application/ndjson");
    match sent.iter().find(|e| !request_header(e, "accept").is_some_and(fits)) {
        Some(e) => Finding::miss(
            format!("a file request sent Accept: {}", request_header(e, "accept").unwrap_or_default()),
            [*e],
        ),
        None => Finding::Pass,
    }
}

/// `{job}/{name}` of a file URL's path (the name alone when the path has no folder).
fn job_file(e: &Exchange) -> &str {
    let path = e.path.as_str();
    match path.rfind('/').and_then(|i| path[..i].rfind('/')) {
        Some(i) => &path[i + 1..],
        None => file_name(e),
    }
}
