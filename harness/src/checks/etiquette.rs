//! Etiquette: bounded requests, clean-up, connection reuse.

use std::collections::BTreeSet;

use super::wire::{Route, route};
use super::{Check, Finding, Input, Level};

/// The family's checks.
pub const CHECKS: &[Check] = &[
    Check {
        id: "etiquette.request_bound",
        title: "no more requests than the case allows (no hammering)",
        requirements: &["CLI-028", "CLI-053", "CLI-065"],
        level: Level::Must,
        always: true,
        run: request_bound,
    },
    Check {
        id: "job.deleted_after_download",
        title: "the job is DELETEd once its files are downloaded",
        requirements: &["CLI-100"],
        level: Level::May,
        always: true,
        run: deleted_after_download,
    },
    Check {
        id: "etiquette.connection_reuse",
        title: "connections are reused rather than one per request",
        requirements: &[],
        level: Level::May,
        always: true,
        run: connection_reuse,
    },
];

fn request_bound(input: &Input) -> Finding {
    let expect = &input.case.scenario.expect;
    // A case set up to fail that the server turned into an ordinary export
    // (a lenient kick-off accepted) is bounded as an ordinary export.
    let ordinary = expect.outcome == crate::scenario::ExpectedOutcome::FailCleanly && input.lenient_kickoff().is_some();
    let max = if ordinary {
        expect.max_requests.max(crate::scenario::model::DEFAULT_MAX_REQUESTS)
    } else {
        expect.max_requests
    };
    let n = input.exchanges.len() as u64;
    if n <= max {
        Finding::Pass
    } else {
        Finding::miss(
            format!("{n} requests, more than the {max} this case allows"),
            input.exchanges.iter().skip(max as usize).take(3),
        )
    }
}

fn deleted_after_download(input: &Input) -> Finding {
    if input.run.exit_code != Some(0) || input.job.is_none() {
        return Finding::skip("the export did not complete");
    }
    let last_file = input.exchanges.iter().rposition(|e| route(e) == Some(Route::File));
    let delete = input.exchanges.iter().rposition(|e| route(e) == Some(Route::Delete));
    match (last_file, delete) {
        (_, None) => Finding::miss("the job was never DELETEd: the server keeps its files until they expire", None),
        (Some(f), Some(d)) if d < f => {
            Finding::miss("the job was DELETEd before its last file was downloaded", [&input.exchanges[d]])
        }
        _ => Finding::Pass,
    }
}

fn connection_reuse(input: &Input) -> Finding {
    // The server's serial number of each connection; the client's port (reusable
    // once a connection closed) only in transcripts that predate it.
    let with_conn: Vec<u64> = input.exchanges.iter().filter_map(|e| e.connection.or(e.conn.map(u64::from))).collect();
    if with_conn.len() < 4 {
        return Finding::skip("fewer than 4 requests");
    }
    let distinct: BTreeSet<u64> = with_conn.iter().copied().collect();
    if distinct.len() < with_conn.len() {
        Finding::Pass
    } else {
        Finding::miss(
            format!("{} requests on {} connections: a new connection per request", with_conn.len(), distinct.len()),
            None,
        )
    }
}
