//! How the run ended: complete, partial or a clean failure, as the case expects.

use super::{Check, Evidence, Finding, Input, Level};
use crate::scenario::ExpectedOutcome;

/// The family's checks.
pub const CHECKS: &[Check] = &[Check {
    id: "outcome.expected",
    title: "the run ends as the case expects: complete, or a clean non-zero exit after a fatal error",
    requirements: &["CLI-052", "CLI-066", "CLI-093"],
    level: Level::Must,
    always: true,
    run: outcome_expected,
}];

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

fn outcome_expected(input: &Input) -> Finding {
    let run = input.run;
    if run.timed_out {
        return Finding::miss("the client was still running at the case's deadline", input.exchanges.last());
    }
    if run.flooded {
        return Finding::miss(format!("the client was stopped: {}", run.stderr), input.exchanges.iter().rev().take(3));
    }
    match input.case.scenario.expect.outcome {
        ExpectedOutcome::Complete | ExpectedOutcome::Partial => match run.exit_code {
            Some(0) => Finding::Pass,
            code => Finding::Miss(Evidence {
                message: format!(
                    "the export should have completed, but the client ended with {}: {}",
                    describe_exit(code, run.signal),
                    last_line(&run.stderr)
                ),
                exchanges: input.exchanges.iter().rev().take(3).map(Into::into).collect(),
            }),
        },
        ExpectedOutcome::FailCleanly => {
            if run.exit_code == Some(0) {
                return Finding::miss(
                    "the client exited 0 although the export failed for good: the failure was hidden",
                    first_fatal(input).map(|i| &input.exchanges[i]),
                );
            }
            if run.exit_code.is_none() {
                return Finding::miss(format!("the client ended by {}", describe_exit(None, run.signal)), None);
            }
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
    }
}

fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "no exit code".into(),
    }
}

fn last_line(text: &str) -> &str {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)")
}
