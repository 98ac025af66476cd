//! How the run ended: complete, partial or a clean failure, as the case expects,
//! judged at the level the specification states. Where it only requires a
//! clean failure and allows a recovery (`[expect] recovery`), a clean failure
//! meets the MUST and `outcome.recovered` judges the recovery at its own level.

use super::{Check, Evidence, Finding, Input, Level};
use crate::scenario::{ExpectedOutcome, Recovery, RecoveryLevel};
use bulkmock_server::Exchange;

/// The family's checks.
pub const CHECKS: &[Check] = &[
    Check {
        id: "outcome.expected",
        title: "the run ends as the case requires: complete, or a clean non-zero exit after a fatal error, never \
                hiding a failure",
        requirements: &["CLI-052", "CLI-066", "CLI-093"],
        level: Level::Must,
        always: true,
        run: outcome_expected,
    },
    Check {
        id: "outcome.recovered",
        title: "where the specification allows a recovery (re-fetch, resume, coping with a server's deviation), \
                the client recovered and completed",
        requirements: &[],
        level: Level::Should,
        always: true,
        run: recovered,
    },
];

/// The first answer that ends an export for good: a 4xx or 5xx that is neither
/// transient nor a refused token.
fn first_fatal(input: &Input) -> Option<usize> {
    input.exchanges.iter().position(|e| {
        e.status >= 400
            && e.status != 401
            && !super::wire::is_transient(e)
            && !matches!(super::wire::route(e), None | Some(super::wire::Route::Metadata))
    })
}

/// What the client was doing when the harness stopped it at the deadline.
pub(crate) fn deadline_account(input: &Input) -> String {
    let limit = input.case.scenario.expect.max_seconds;
    let Some(last) = input.exchanges.last() else {
        return format!("stopped at the case's deadline (max_seconds = {limit}) before it sent any request");
    };
    let since = input.run.ended_unix_ms.map(|end| end.saturating_sub(last.unix_ms) as f64 / 1000.0);
    let waited = since.map(|s| format!(", {s:.1} s before it was stopped")).unwrap_or_default();
    let retry_after = super::wire::response_header(last, "retry-after")
        .map(|v| format!(" (answered with Retry-After: {v})"))
        .unwrap_or_default();
    format!(
        "stopped at the case's deadline (max_seconds = {limit}, stopped after {:.1} s): its last request was \
         {}{retry_after}{waited}",
        input.run.seconds,
        super::ExchangeRef::from(last)
    )
}

fn outcome_expected(input: &Input) -> Finding {
    let run = input.run;
    if run.timed_out {
        // A timeout is its own verdict: the case says so, no MUST is claimed.
        return Finding::Skip(deadline_account(input));
    }
    if run.flooded {
        return Finding::miss(format!("the client was stopped: {}", run.stderr), input.exchanges.iter().rev().take(3));
    }
    if run.exit_code.is_none() {
        return Finding::miss(format!("the client ended by {}", describe_exit(None, run.signal)), None);
    }
    let expect = &input.case.scenario.expect;
    match expect.outcome {
        ExpectedOutcome::Complete | ExpectedOutcome::Partial if run.exit_code == Some(0) => Finding::Pass,
        // Partial success: the client may report the server's errors with a
        // non-zero exit; its files are judged by the output checks.
        ExpectedOutcome::Partial => Finding::Pass,
        ExpectedOutcome::Complete if expect.recovery.is_some() && met_the_setup(input) => clean_failure(input),
        // Completing is what the case's own requirements ask: it cites them.
        ExpectedOutcome::Complete => Finding::MissAt {
            level: Level::Must,
            requirements: case_requirements(input)
                .unwrap_or_else(|| CHECKS[0].requirements.iter().map(|r| r.to_string()).collect()),
            evidence: Evidence {
                message: format!(
                    "the export should have completed, but the client ended with {}: {}",
                    describe_exit(run.exit_code, run.signal),
                    run.reason()
                ),
                exchanges: input.exchanges.iter().rev().take(3).map(Into::into).collect(),
            },
        },
        ExpectedOutcome::FailCleanly if run.exit_code == Some(0) => exit_zero_on_failure(input),
        ExpectedOutcome::FailCleanly if met_the_setup(input) => clean_failure(input),
        ExpectedOutcome::FailCleanly => Finding::miss(
            format!(
                "the client ended with {} before it met the failure this case sets up (no error answer, no fault \
                 fired): {}",
                describe_exit(run.exit_code, run.signal),
                run.reason()
            ),
            input.exchanges.iter().rev().take(3),
        ),
    }
}

/// Whether the client met what the case sets up, so that stopping can be a
/// response to it: a fault fired, or the server answered an error. A client
/// that stops before (a bad key file, a crash at start) has not failed cleanly.
fn met_the_setup(input: &Input) -> bool {
    input.exchanges.iter().any(|e| e.fault.is_some() || e.status >= 400)
}

/// A non-zero exit: clean unless the client hammered after a fatal answer.
fn clean_failure(input: &Input) -> Finding {
    if let Some(i) = first_fatal(input) {
        let after = input.exchanges.len() - i - 1;
        if after > 10 {
            return Finding::miss(
                format!("{after} more requests after a fatal answer: the client hammered the server"),
                input.exchanges[i..].iter().take(6),
            );
        }
    }
    Finding::Pass
}

/// Exit 0 where the case sets up a failure. Blamed only with evidence that the
/// client received a signal it was required to act on: a fatal answer, or
/// damaged data it kept. A failure that never reached it is no failure hidden.
fn exit_zero_on_failure(input: &Input) -> Finding {
    if let Some(kickoff) = input.lenient_kickoff() {
        let ignored = input.job.map(|j| j.lenient_ignored.join(", ")).unwrap_or_default();
        return Finding::skip(&format!(
            "the client asked for Prefer: handling=lenient and the server accepted the kick-off (#{}), ignoring \
             {ignored} and reporting it in the error file: an ordinary export, not the failure this case sets up",
            kickoff.seq
        ));
    }
    if let Some(i) = first_fatal(input) {
        let fatal: &Exchange = &input.exchanges[i];
        return Finding::miss(
            format!(
                "the client exited 0 although the server answered {} {} with {}, which ends the export: the failure \
                 was hidden",
                fatal.method, fatal.path, fatal.status
            ),
            [fatal],
        );
    }
    if input.job.is_none() {
        return Finding::miss("the client exited 0 without ever starting an export", None);
    }
    if only_duplicates(input) {
        return Finding::miss_at(
            Level::Should,
            &["CLI-092"],
            format!(
                "the client exited 0 keeping {} resources twice, as the server sent them: the data is whole, but \
                 the line counts the manifest gives went unchecked",
                input.output.duplicated
            ),
            None,
        );
    }
    if !input.output.resources_exact() {
        let (differences, requirements) = super::output::differences(input);
        return Finding::miss_at(
            Level::Must,
            requirements,
            format!("the client exited 0 keeping damaged data: {differences}"),
            None,
        );
    }
    // Exact data and nothing fatal on the wire: only the case's metadata said
    // something was wrong. Not reporting it loses nothing.
    let level = match input.case.scenario.expect.unreported {
        Some(RecoveryLevel::May) => Level::May,
        Some(RecoveryLevel::Should) | None => Level::Should,
    };
    Finding::MissAt {
        level,
        requirements: case_requirements(input).unwrap_or_default(),
        evidence: Evidence {
            message: "the client exited 0 and kept exactly the exported resources, without reporting the problem \
                      this case sets up: no data was lost, but the problem went unreported"
                .into(),
            exchanges: Vec::new(),
        },
    }
}

/// Only identical copies of exported resources, as a server that repeated
/// lines sent them: the data is whole, the manifest's count (one less) unchecked.
fn only_duplicates(input: &Input) -> bool {
    let o = input.output;
    o.duplicated > 0 && o.missing == 0 && o.extra == 0 && o.corrupted == 0 && !o.too_large
}

fn recovered(input: &Input) -> Finding {
    let Some(Recovery { level, requirements }) = &input.case.scenario.expect.recovery else {
        return Finding::skip("the case names no optional recovery");
    };
    let run = input.run;
    if run.timed_out {
        return Finding::Skip(deadline_account(input));
    }
    if run.exit_code == Some(0) {
        return Finding::Pass;
    }
    let level = match level {
        RecoveryLevel::Should => Level::Should,
        RecoveryLevel::May => Level::May,
    };
    Finding::MissAt {
        level,
        requirements: requirements.clone(),
        evidence: Evidence {
            message: format!(
                "the client stopped cleanly ({}: {}) where it could have recovered and completed; the specification \
                 does not require it",
                describe_exit(run.exit_code, run.signal),
                run.reason()
            ),
            exchanges: input.exchanges.iter().rev().take(3).map(Into::into).collect(),
        },
    }
}

/// The client requirements (CLI-nnn) the case names, if it names any.
fn case_requirements(input: &Input) -> Option<Vec<String>> {
    let ids: Vec<String> = input.case.scenario.requirements.iter().filter(|r| r.starts_with("CLI-")).cloned().collect();
    (!ids.is_empty()).then_some(ids)
}

fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "no exit code".into(),
    }
}
