//! Judging a proxied export with no scenario (`bulkmock judge --proxy-record
//! FILE` alone): the export as the record shows it. The request is the recorded
//! kick-off, the faults are the proxy's plan, the expectation is a complete
//! export whose output equals what the upstream served; the client's exit code
//! says whether it claims success. A clean failure after a fault or an error
//! meets the MUST (completing anyway is judged at MAY, since whether the faults
//! left a way to complete is scenario knowledge), and every check that needs
//! knowledge only a scenario has is skipped, saying why, never failed.

use std::path::Path;

use bulkmock_server::Exchange;
use bulkmock_server::faults::Target;

use super::proxied::ProxiedExport;
use crate::checks::{Evidence, ExchangeRef, Verdict};
use crate::report::{CaseResult, CaseVerdict};
use crate::scenario::{
    Case, ClientSpec, Expect, ExpectedOutcome, LevelName, Recovery, RecoveryLevel, Scenario, ServerSpec,
};

/// The case id of a judged proxy record.
pub const CASE_ID: &str = "proxy/recorded-export";

/// The deadline of a recorded export: a week. A real upstream's job takes what
/// it takes; the record shows an export that ended, so no deadline applies.
const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Checks that need what only a scenario knows, and why they are skipped.
const NEEDS_A_SCENARIO: &[(&str, &str)] = &[
    (
        "kickoff.matches_request",
        "no scenario: the request judged is the recorded kick-off itself, so there is no asked-for request to \
         compare it with (pass --scenario to judge a case's request)",
    ),
    (
        "etiquette.request_bound",
        "no scenario: an export against a real upstream has no case's request bound (pass --scenario to judge \
         one)",
    ),
];

/// Why `outcome.recovered` is skipped for a client that did not complete.
const RECOVERY_UNKNOWN: &str = "no scenario: whether the export could still complete after these faults and \
                                answers is not known, so giving up cleanly is not held against the client";

/// When the client's last status answer said the export was still running
/// (202): that answer, described. A client that stops then has spent the time
/// it gives an export; a real upstream's job takes what it takes, and no
/// requirement says how long a client must wait.
pub fn stopped_while_running(exchanges: &[Exchange]) -> Option<String> {
    let kickoff = exchanges.iter().rposition(|e| e.target == Some(Target::Kickoff) && e.status == 202)?;
    let last = exchanges[kickoff..].iter().rfind(|e| e.target == Some(Target::Status))?;
    (last.status == 202).then(|| ExchangeRef::from(last).to_string())
}

/// The case a record is judged as: its kick-off as the request (level,
/// Group, `_type`, method), the proxy's fault plan, authorization on when the
/// client sent tokens (`exchanges` is the proxy's transcript), the
/// expectation of a complete export of what the upstream served.
pub fn case_of(export: &ProxiedExport, record: &Path, exchanges: &[Exchange]) -> Case {
    let job = export.job.as_ref();
    let level = match job.map(|j| j.level.as_str()) {
        Some("patient") => LevelName::Patient,
        Some("group") => LevelName::Group,
        _ => LevelName::System,
    };
    let client = ClientSpec {
        level,
        group: job.and_then(|j| j.group.clone()),
        types: job.map(|j| j.types.clone()).unwrap_or_default(),
        allow_partial_manifests: job.is_some_and(|j| j.partial_manifests),
        post: export.method == "POST",
        ..ClientSpec::default()
    };
    let expect = Expect {
        outcome: ExpectedOutcome::Complete,
        recovery: Some(Recovery { level: RecoveryLevel::May, requirements: vec!["CLI-066".into(), "CLI-093".into()] }),
        max_seconds: MAX_SECONDS,
        max_requests: u64::MAX / 4,
        ..Expect::default()
    };
    let server =
        ServerSpec { auth: exchanges.iter().any(|e| e.headers.contains_key("authorization")), ..ServerSpec::default() };
    let scenario = Scenario {
        title: format!("the export recorded by bulkmock proxy in front of {}", export.upstream),
        description: Some(format!("judged from the proxy record {} without a scenario", record.display())),
        requirements: vec!["CLI-052".into(), "CLI-066".into(), "CLI-093".into()],
        server,
        faults: export.faults.clone(),
        client,
        expect,
        incremental: None,
        matrix: Default::default(),
    };
    Case {
        id: CASE_ID.into(),
        scenario_id: CASE_ID.into(),
        path: record.to_path_buf(),
        matrix: Default::default(),
        scenario,
    }
}

/// Finishes a result judged without a scenario. Skips the checks it cannot
/// decide, with the reason: the request and its bound, a recovery the faults
/// may not have allowed, and the comparison of files whose lines the record
/// does not hold. A failed output comparison names the upstream's files the
/// lost or changed resources came from. The verdict is taken again from the checks left.
/// `running` is [`stopped_while_running`]'s account: a client that then ended
/// without completing is not blamed for it.
pub fn finish(result: &mut CaseResult, export: &ProxiedExport, timed_out: bool, running: Option<&str>) {
    name_the_files(result, export);
    let unread = (!export.unread.is_empty()).then(|| {
        format!(
            "the record holds no whole body of {} file(s) of the manifest, so their lines are unknown and the \
             output cannot be compared: {}",
            export.unread.len(),
            export.unread.join(", ")
        )
    });
    // Files on another host (cloud storage) are fetched directly, never through the proxy.
    let elsewhere = off_host(export);
    let fetched_directly = (!elsewhere.is_empty() && elsewhere.len() == export.unread.len()).then(|| {
        format!(
            "the manifest lists {} file(s) on another host than the upstream, which the client fetches directly, \
             not through the proxy, so whether it received them is not known: {}",
            elsewhere.len(),
            elsewhere.join(", ")
        )
    });
    for check in &mut result.checks {
        let failed = matches!(check.verdict, Verdict::Fail | Verdict::Warn);
        let reason = match NEEDS_A_SCENARIO.iter().find(|(id, _)| *id == check.id) {
            Some((_, why)) => Some(why.to_string()),
            None if check.id == "outcome.recovered" && check.verdict != Verdict::Pass => {
                Some(RECOVERY_UNKNOWN.to_string())
            }
            None if check.id == "output.matches_export" && check.verdict != Verdict::Pass => unread.clone(),
            None if check.id == "files.each_downloaded" && failed => fetched_directly.clone(),
            None if check.id == "outcome.expected" && failed => running.map(|last| {
                format!(
                    "the client ended without completing while the upstream still answered the export as in \
                     progress (its last status answer: {last}); how long to wait for a real server's export is \
                     the client's choice, and no requirement sets it, so completion is not judged"
                )
            }),
            None => None,
        };
        if let Some(message) = reason {
            check.verdict = Verdict::Skip;
            check.evidence = Some(Evidence { message, exchanges: Vec::new() });
        }
    }
    if result.verdict != CaseVerdict::Error {
        result.verdict = CaseResult::verdict_of(timed_out, false, &result.checks);
    }
}

/// The files of the manifest the record holds no body of whose URLs are not
/// on the upstream's origin (the proxy rewrites only those to itself).
fn off_host(export: &ProxiedExport) -> Vec<&str> {
    let origin = |url: &str| -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase())
    };
    let upstream = origin(&export.upstream);
    export.unread.iter().map(String::as_str).filter(|u| origin(u) != upstream).collect()
}

/// Appends to a failed `output.matches_export` the upstream files that held
/// the resources found missing or changed.
fn name_the_files(result: &mut CaseResult, export: &ProxiedExport) {
    let details = &result.outcome.output.details;
    let examples: Vec<&str> = details
        .values()
        .flat_map(|kinds| kinds.iter().filter(|(kind, _)| kind.as_str() != "extra"))
        .flat_map(|(_, diff)| diff.examples.iter().map(String::as_str))
        .collect();
    let files = export.files_holding(&examples);
    let Some(check) = result.checks.iter_mut().find(|c| c.id == "output.matches_export") else { return };
    if files.is_empty() || !matches!(check.verdict, Verdict::Fail | Verdict::Warn) {
        return;
    }
    if let Some(evidence) = &mut check.evidence {
        evidence
            .message
            .push_str(&format!("; the resources named came from the upstream's file(s) {}", files.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::JobFacts;

    #[test]
    fn the_case_asks_what_the_record_shows() {
        let export = ProxiedExport {
            upstream: "http://up/fhir".into(),
            method: "POST".into(),
            job: Some(JobFacts {
                level: "group".into(),
                group: Some("g1".into()),
                types: vec!["Patient".into()],
                ..JobFacts::default()
            }),
            ..ProxiedExport::default()
        };
        let case = case_of(&export, Path::new("/r/record.ndjson"), &[]);
        let s = &case.scenario;
        assert_eq!((s.client.level, s.client.group.as_deref(), s.client.post), (LevelName::Group, Some("g1"), true));
        assert_eq!(s.client.types, ["Patient"]);
        assert!(!s.server.auth, "no token passed the proxy");
        assert_eq!(s.expect.outcome, ExpectedOutcome::Complete);
        assert_eq!(s.expect.recovery.as_ref().map(|r| r.level), Some(RecoveryLevel::May));
    }

    #[test]
    fn files_in_cloud_storage_are_off_host() {
        let export = ProxiedExport {
            upstream: "https://EHR.example:8443/fhir/R4".into(),
            unread: vec![
                "https://ehr.example:8443/files/1.ndjson".into(),
                "https://bucket.s3.example/2.ndjson?sig=x".into(),
            ],
            ..ProxiedExport::default()
        };
        assert_eq!(off_host(&export), ["https://bucket.s3.example/2.ndjson?sig=x"]);
    }
}
