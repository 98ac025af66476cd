//! Kick-off: headers, and whether the export started is the one asked for.

use super::wire::{Route, request_header, route};
use super::{Check, Finding, Input, Level};
use bulkmock_server::Exchange;

/// The family's checks.
pub const CHECKS: &[Check] = &[
    Check {
        id: "kickoff.accept",
        title: "kick-off sends Accept: application/fhir+json",
        requirements: &["CLI-040"],
        level: Level::Should,
        always: true,
        run: accept,
    },
    Check {
        id: "kickoff.prefer_async",
        title: "kick-off sends Prefer: respond-async",
        requirements: &["CLI-041"],
        level: Level::Should,
        always: true,
        run: prefer_async,
    },
    Check {
        id: "kickoff.matches_request",
        title: "the export started is the one the case asked for (level, group, method, parameters)",
        requirements: &["CLI-051", "CLI-046", "CLI-047"],
        level: Level::Should,
        always: true,
        run: matches_request,
    },
    Check {
        id: "kickoff.type_filter_capabilities",
        title: "before a kick-off with _typeFilter, the client reads the CapabilityStatement for usable search parameters",
        requirements: &["CLI-049"],
        level: Level::Should,
        always: false,
        run: type_filter_capabilities,
    },
    Check {
        id: "kickoff.repeated_parameters",
        title: "a POST kick-off repeats Parameters entries for several values, never joins them with commas",
        requirements: &["CLI-045"],
        level: Level::Should,
        always: false,
        run: repeated_parameters,
    },
    Check {
        id: "kickoff.since_transaction_time",
        title: "an incremental pull sends the previous manifest's transactionTime as _since, never the client's clock",
        requirements: &["CLI-054"],
        level: Level::Should,
        always: true,
        run: since_transaction_time,
    },
];

fn kickoffs<'a>(input: &'a Input) -> Vec<&'a Exchange> {
    input.exchanges.iter().filter(|e| route(e) == Some(Route::Kickoff)).collect()
}

fn accept(input: &Input) -> Finding {
    let all = kickoffs(input);
    if all.is_empty() {
        return Finding::skip("no kick-off");
    }
    match all.iter().find(|e| !request_header(e, "accept").is_some_and(|a| a.contains("application/fhir+json"))) {
        Some(e) => Finding::miss(
            format!("kick-off sent Accept {:?}, not application/fhir+json", request_header(e, "accept")),
            [*e],
        ),
        None => Finding::Pass,
    }
}

fn prefer_async(input: &Input) -> Finding {
    let all = kickoffs(input);
    if all.is_empty() {
        return Finding::skip("no kick-off");
    }
    match all.iter().find(|e| !request_header(e, "prefer").is_some_and(|p| p.contains("respond-async"))) {
        Some(e) => Finding::miss(
            format!("kick-off sent Prefer {:?}, without respond-async", request_header(e, "prefer")),
            [*e],
        ),
        None => Finding::Pass,
    }
}

fn matches_request(input: &Input) -> Finding {
    let Some(job) = input.job else { return Finding::skip("no export was started") };
    let want = &input.case.scenario.client;
    let mut problems = Vec::new();
    if job.level != want.level.as_str() {
        problems.push(format!("level {} instead of {}", job.level, want.level.as_str()));
    }
    if job.group != want.group {
        problems.push(format!("group {:?} instead of {:?}", job.group, want.group));
    }
    if !want.types.is_empty() {
        // includeAssociatedData adds Provenance to what the server exports.
        let associated = !want.include_associated_data.is_empty();
        let mut got: Vec<String> = job.types.iter().filter(|t| !(associated && *t == "Provenance")).cloned().collect();
        let mut asked: Vec<String> =
            want.types.iter().filter(|t| !(associated && *t == "Provenance")).cloned().collect();
        got.sort();
        asked.sort();
        asked.dedup();
        // Quirk omits-unauthorised-types: the server itself drops types the grant lacks.
        let omitting = input.case.scenario.server.quirks.has(bulkmock_server::quirks::Quirk::OmitsUnauthorisedTypes);
        // Under handling=lenient the server may drop types it cannot export (reported in the error file).
        let narrowed = omitting || job.lenient_ignored.iter().any(|p| p == "_type");
        let same = if narrowed { got.iter().all(|t| asked.contains(t)) } else { got == asked };
        if !same {
            problems.push(format!("_type {} instead of {}", got.join(","), asked.join(",")));
        }
    }
    // A parameter the server ignored under Prefer: handling=lenient was sent all the same.
    let sent = |name: &str, in_effect: bool| in_effect || job.lenient_ignored.iter().any(|p| p == name);
    let presence = [
        ("_elements", sent("_elements", job.elements), !want.elements.is_empty()),
        ("_typeFilter", sent("_typeFilter", job.type_filters), !want.type_filters.is_empty()),
        ("organizeOutputBy", sent("organizeOutputBy", job.organized), want.organize_output_by.is_some()),
        ("allowPartialManifests", sent("allowPartialManifests", job.partial_manifests), want.allow_partial_manifests),
        (
            "includeAssociatedData",
            sent("includeAssociatedData", job.associated_data),
            !want.include_associated_data.is_empty(),
        ),
    ];
    for (name, got, asked) in presence {
        if got != asked {
            problems.push(format!("{name} {} although the case {}", given(got), asked_for(asked)));
        }
    }
    let mut asked_patients = want.patients.clone();
    asked_patients.sort();
    asked_patients.dedup();
    if !asked_patients.is_empty() && job.patients != asked_patients.len() as u64 {
        problems.push(format!("{} patients instead of the {} named in `patient`", job.patients, asked_patients.len()));
    }
    // Prefer: separate-export-status travels in a header, read on the wire.
    let separate = kickoffs(input)
        .iter()
        .any(|e| request_header(e, "prefer").is_some_and(|p| p.contains("separate-export-status")));
    if separate != want.separate_export_status {
        problems.push(format!(
            "Prefer: separate-export-status {} although the case {}",
            given(separate),
            asked_for(want.separate_export_status)
        ));
    }
    let wants_post = want.kickoff_method() == "POST";
    if wants_post && kickoffs(input).iter().all(|e| e.method != "POST") {
        problems.push("GET although the case asked for a POST kick-off".to_string());
    }
    // Incremental runs send _since on purpose: kickoff.since_transaction_time judges it.
    let since = sent("_since", job.since);
    if input.runs.len() < 2 && since != want.since.is_some() {
        problems.push(format!("_since {} although the case {}", given(since), asked_for(want.since.is_some())));
    }
    let until = sent("_until", job.until);
    if until != want.until.is_some() {
        problems.push(format!("_until {} although the case {}", given(until), asked_for(want.until.is_some())));
    }
    if problems.is_empty() {
        Finding::Pass
    } else {
        Finding::miss(format!("the client started another export: {}", problems.join("; ")), kickoffs(input))
    }
}

fn type_filter_capabilities(input: &Input) -> Finding {
    if !input.job.is_some_and(|j| j.type_filters) {
        return Finding::skip("no export with _typeFilter");
    }
    let Some(first) = kickoffs(input).into_iter().next() else { return Finding::skip("no kick-off") };
    let read_before = input.exchanges.iter().any(|e| {
        e.seq < first.seq && e.method == "GET" && route(e) == Some(Route::Metadata) && e.path.ends_with("/metadata")
    });
    if read_before {
        Finding::Pass
    } else {
        Finding::miss("the client sent _typeFilter without reading the server's CapabilityStatement first", [first])
    }
}

fn repeated_parameters(input: &Input) -> Finding {
    let Some(job) = input.job else { return Finding::skip("no export was started") };
    let posts: Vec<&Exchange> = kickoffs(input).into_iter().filter(|e| e.method == "POST").collect();
    if posts.is_empty() {
        return Finding::skip("no POST kick-off");
    }
    if job.comma_joined.is_empty() {
        Finding::Pass
    } else {
        Finding::miss(
            format!(
                "the POST kick-off joined several values with commas in one entry of {} (the v4 ballot says to repeat the entry)",
                job.comma_joined.join(", ")
            ),
            posts,
        )
    }
}

fn given(b: bool) -> &'static str {
    if b { "given" } else { "missing" }
}

fn asked_for(b: bool) -> &'static str {
    if b { "asked for it" } else { "did not" }
}

/// CLI-054: every incremental run asks for the changes since the transactionTime
/// of the run before (of any of its jobs: a Group pull may start two at one revision).
fn since_transaction_time(input: &Input) -> Finding {
    if input.runs.len() < 2 {
        return Finding::skip("not an incremental case");
    }
    let mut checked = false;
    for (n, pair) in input.runs.windows(2).enumerate() {
        let (previous, run) = (&pair[0], &pair[1]);
        if previous.jobs.is_empty() {
            continue;
        }
        let number = n + 2;
        let times: Vec<i64> = previous.jobs.iter().map(|j| j.transaction_time).collect();
        let shown = instant(times[times.len() - 1]);
        let evidence: Vec<&Exchange> = kickoffs(input).into_iter().filter(|e| e.seq >= run.first_seq).take(3).collect();
        let with_since: Vec<i64> = run.jobs.iter().filter_map(|j| j.since).collect();
        if with_since.is_empty() {
            if run.jobs.is_empty() {
                continue;
            }
            return Finding::miss(
                format!(
                    "run {number} (incremental) started no export with _since: it exported everything again \
                     instead of the changes since transactionTime {shown}"
                ),
                evidence,
            );
        }
        if let Some(&sent) = with_since.iter().find(|s| !times.contains(s)) {
            let effect = if times.iter().all(|&t| sent > t) {
                "later than it: changes made in between are missed (a _since from the client's own clock?)"
            } else {
                "earlier than it: changes are fetched again"
            };
            return Finding::miss(
                format!(
                    "run {number} sent _since={}, but the previous run's manifest said transactionTime {shown}, \
                     {effect}",
                    instant(sent)
                ),
                evidence,
            );
        }
        checked = true;
    }
    if checked { Finding::Pass } else { Finding::skip("no run after an export") }
}

fn instant(secs: i64) -> String {
    bulkmock_server::data::clock::instant_string(secs)
}
