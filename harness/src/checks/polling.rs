//! Polling etiquette: Retry-After in both forms, a floor without it, and
//! transient answers not taken as failure.

use super::wire::{Route, is_transient, responded_unix_ms, response_header, retry_allowed_at, route};
use super::{Check, Finding, Input, Level};
use bulkmock_server::Exchange;

/// The family's checks.
pub const CHECKS: &[Check] = &[
    Check {
        id: "status.honours_retry_after",
        title: "no request before the Retry-After a response asked for (seconds or HTTP-date)",
        requirements: &["CLI-062", "CLI-065", "CLI-053"],
        level: Level::Should,
        always: true,
        run: honours_retry_after,
    },
    Check {
        id: "status.poll_interval",
        title: "without Retry-After, polls no faster than the floor (backoff)",
        requirements: &["CLI-061"],
        level: Level::Should,
        always: true,
        run: poll_interval,
    },
    Check {
        id: "status.backoff",
        title: "without Retry-After, waits between polls grow (exponential backoff)",
        requirements: &["CLI-061"],
        level: Level::Should,
        always: true,
        run: backoff,
    },
    Check {
        id: "status.accept_json",
        title: "status requests send Accept: application/json",
        requirements: &["CLI-063"],
        level: Level::Should,
        always: true,
        run: accept_json,
    },
    Check {
        id: "status.transient_retried",
        title: "429 and transient 5xx are retried, not taken as failure",
        requirements: &["CLI-065", "CLI-066", "CLI-093", "CLI-067"],
        level: Level::Must,
        always: true,
        run: transient_retried,
    },
];

/// Requests that address the same resource: the same kick-off route, or the
/// same status URL, manifest page or file (a `next` page is another resource).
fn same_resource(a: &Exchange, b: &Exchange) -> bool {
    let ra = route(a);
    ra == route(b)
        && match ra {
            Some(Route::Kickoff | Route::Token) => true,
            _ => a.path == b.path,
        }
}

/// The next request for the same resource as exchange `i` that the client sent
/// after that answer reached it: a parallel client's requests already in
/// flight (sent before the answer) could not have heeded it.
fn next_after_answer<'a>(input: &Input<'a>, i: usize) -> Option<&'a Exchange> {
    let e = &input.exchanges[i];
    let answered = responded_unix_ms(e);
    input.exchanges[i + 1..].iter().find(|n| same_resource(e, n) && n.unix_ms >= answered)
}

fn honours_retry_after(input: &Input) -> Finding {
    let mut exercised = false;
    for (i, e) in input.exchanges.iter().enumerate() {
        let Some((allowed, value)) = retry_allowed_at(e) else { continue };
        let Some(next) = next_after_answer(input, i) else { continue };
        exercised = true;
        if next.unix_ms < allowed {
            let early = (allowed - next.unix_ms) as f64 / 1000.0;
            let waited = next.unix_ms.saturating_sub(responded_unix_ms(e)) as f64 / 1000.0;
            return Finding::miss(
                format!(
                    "Retry-After: {value} was answered, yet the next request came {waited:.2} s later ({early:.2} s early)"
                ),
                [e, next],
            );
        }
    }
    if exercised { Finding::Pass } else { Finding::skip("no Retry-After followed by another request") }
}

fn poll_interval(input: &Input) -> Finding {
    let floor = input.case.scenario.expect.poll_floor_ms;
    let gaps = unguided_gaps(input);
    if gaps.is_empty() {
        return Finding::skip("no in-progress answer without Retry-After was polled again");
    }
    match gaps.iter().find(|(gap, _, _)| *gap < floor) {
        Some((gap, e, next)) => Finding::miss(
            format!("polled again {gap} ms after a {} without Retry-After (floor {floor} ms)", e.status),
            [*e, *next],
        ),
        None => Finding::Pass,
    }
}

/// The first transient answer on each resource must be followed by another try
/// (later ones may end in giving up, within the case's bounds).
fn transient_retried(input: &Input) -> Finding {
    let mut exercised = false;
    let mut seen: Vec<&Exchange> = Vec::new();
    for (i, e) in input.exchanges.iter().enumerate() {
        // DELETE is optional clean-up (CLI-100): giving up on it is allowed.
        if !is_transient(e) || matches!(route(e), None | Some(Route::Token | Route::Metadata | Route::Delete)) {
            continue;
        }
        if seen.iter().any(|s| same_resource(s, e)) {
            continue;
        }
        seen.push(e);
        exercised = true;
        let retried = input.exchanges[i + 1..].iter().any(|n| same_resource(e, n));
        if !retried {
            if let Some(reason) = input.stopped_after(e) {
                return Finding::Skip(reason);
            }
            return Finding::miss(format!("a transient {} was never retried: the client gave up on it", e.status), [e]);
        }
    }
    if exercised { Finding::Pass } else { Finding::skip("no transient answer") }
}

/// Gaps between in-progress polls without Retry-After, per job, in order.
fn unguided_gaps<'a>(input: &Input<'a>) -> Vec<(u64, &'a Exchange, &'a Exchange)> {
    let mut out = Vec::new();
    for (i, e) in input.exchanges.iter().enumerate() {
        let in_progress = e.status == 202 || response_header(e, "x-export-status") == Some("202");
        if route(e) != Some(Route::Status) || !in_progress || response_header(e, "retry-after").is_some() {
            continue;
        }
        if let Some(next) = next_after_answer(input, i) {
            out.push((next.unix_ms.saturating_sub(responded_unix_ms(e)), e, next));
        }
    }
    out
}

/// Without Retry-After, waits grow (CLI-061: exponential backoff): per job,
/// after three or more unguided polls the last gap is at least one and a half
/// times the first (doubling waits with jitter clear it with room to spare; a
/// fixed interval, however polite, does not back off).
fn backoff(input: &Input) -> Finding {
    let gaps = unguided_gaps(input);
    let mut jobs: Vec<&str> = gaps.iter().map(|(_, e, _)| e.path.as_str()).collect();
    jobs.dedup();
    let mut exercised = false;
    for job in jobs {
        let of_job: Vec<&(u64, &Exchange, &Exchange)> = gaps.iter().filter(|(_, e, _)| e.path == job).collect();
        if of_job.len() < 3 {
            continue;
        }
        exercised = true;
        let (first, last) = (of_job[0], of_job[of_job.len() - 1]);
        if last.0 * 2 < first.0 * 3 {
            let all: Vec<String> = of_job.iter().map(|(gap, _, _)| format!("{gap}")).collect();
            return Finding::miss(
                format!(
                    "waits between polls without Retry-After did not grow ({} ms): no exponential backoff",
                    all.join(", ")
                ),
                [first.1, last.2],
            );
        }
    }
    if exercised { Finding::Pass } else { Finding::skip("fewer than three polls without Retry-After") }
}

fn accept_json(input: &Input) -> Finding {
    let polls: Vec<&Exchange> = input.exchanges.iter().filter(|e| route(e) == Some(Route::Status)).collect();
    if polls.is_empty() {
        return Finding::skip("no status request");
    }
    let json = |e: &&Exchange| {
        super::wire::request_header(e, "accept")
            .is_some_and(|a| a.contains("application/json") || a.contains("application/fhir+json"))
    };
    match polls.iter().find(|e| !json(e)) {
        Some(e) => Finding::miss(
            match super::wire::request_header(e, "accept") {
                Some(a) => format!("a status request sent Accept: {a}, not application/json"),
                None => "a status request sent no Accept (application/json is asked for)".into(),
            },
            [*e],
        ),
        None => Finding::Pass,
    }
}
