//! One case's evidence: its outcome, its checks, the exchanges as a timeline,
//! the output differences and the client's stderr tail.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::{E, verdict_class};
use crate::checks::{ExchangeRef, Verdict};
use crate::report::{CaseResult, CaseVerdict};
use crate::verify::OutputReport;

/// Writes case `index` as a collapsible section, open unless it passed.
pub(super) fn write(out: &mut String, index: usize, case: &CaseResult) {
    let v = case.verdict.as_str();
    let open = if case.verdict == CaseVerdict::Pass { "" } else { " open" };
    let _ = writeln!(
        out,
        "<details class=\"case k-{v}\" id=\"case-{index}\" data-case=\"{index}\" data-verdict=\"{v}\"{open}>\
         <summary><span class=\"badge {}\">{v}</span><span class=\"id mono\">{}</span>\
         <span class=\"muted\">{}</span></summary>\n<div class=\"body\">",
        verdict_class(v),
        E(&case.id),
        E(&case.title)
    );
    facts(out, case);
    if let Some(error) = &case.error {
        let _ = writeln!(out, "<h3>Why the case could not run</h3><pre>{}</pre>", E(error));
    }
    checks(out, index, case);
    let cited: BTreeSet<u64> = case
        .checks
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Fail | Verdict::Warn | Verdict::Info))
        .filter_map(|c| c.evidence.as_ref())
        .flat_map(|e| e.exchanges.iter().map(|x| x.seq))
        .collect();
    timeline(out, index, &case.exchanges, &cited);
    output(out, &case.outcome.output);
    for (name, tail) in [("stderr", &case.outcome.stderr_tail), ("stdout", &case.outcome.stdout_tail)] {
        if !tail.is_empty() {
            let _ = writeln!(out, "<h3>{name} (last lines)</h3><pre class=\"stderr\">{}</pre>", E(tail));
        }
    }
    let _ = writeln!(out, "<h3>Re-run this case</h3><pre>{}</pre>", E(&case.rerun));
    out.push_str("</div></details>\n");
}

fn facts(out: &mut String, case: &CaseResult) {
    let o = &case.outcome;
    let exit = o.exit_code.map_or_else(|| "none".to_string(), |c| c.to_string());
    let _ = write!(
        out,
        "<div class=\"facts\"><span>expected <b>{}</b>, observed <b>{}</b></span><span>exit code <b>{}</b></span>\
         <span><b>{:.1}</b> s</span><span><b>{}</b> requests</span>",
        E(&o.expected),
        E(&o.observed),
        exit,
        o.seconds,
        o.requests
    );
    if !case.requirements.is_empty() {
        let _ = write!(
            out,
            "<span>scenario requirements <b class=\"mono\">{}</b></span>",
            E(&case.requirements.join(", "))
        );
    }
    for (key, value) in &case.matrix {
        let _ = write!(out, "<span>{} = <b class=\"mono\">{}</b></span>", E(key), E(value));
    }
    if let Some(dir) = &case.dir {
        let _ = write!(out, "<span>folder <b class=\"mono\">{}</b></span>", E(dir));
    }
    out.push_str("</div>\n");
}

fn checks(out: &mut String, index: usize, case: &CaseResult) {
    if case.checks.is_empty() {
        return;
    }
    out.push_str(
        "<h3>Checks</h3><table class=\"checks\"><thead><tr><th>verdict</th><th>level</th><th>check</th>\
         <th>requirements</th><th>evidence</th></tr></thead><tbody>\n",
    );
    for check in &case.checks {
        let v = check.verdict.as_str();
        let dim = if matches!(check.verdict, Verdict::Skip) { " dim" } else { "" };
        let _ = write!(
            out,
            "<tr class=\"check{dim}\" data-level=\"{level}\" data-verdict=\"{v}\"><td class=\"t-{v}\"><b>{v}</b></td>\
             <td>{level}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"ev\">",
            E(&check.id),
            E(&check.requirements.join(", ")),
            level = check.level.as_str()
        );
        if let Some(evidence) = &check.evidence {
            let _ = write!(out, "{}", E(&evidence.message));
            for x in &evidence.exchanges {
                let _ = write!(
                    out,
                    " <a class=\"mono\" href=\"#case-{index}-x-{}\" title=\"{} {}\">#{}</a>",
                    x.seq,
                    E(&x.method),
                    E(&x.url),
                    x.seq
                );
            }
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn timeline(out: &mut String, index: usize, exchanges: &[ExchangeRef], cited: &BTreeSet<u64>) {
    if exchanges.is_empty() {
        out.push_str("<h3>Exchanges</h3><p class=\"muted\">None recorded.</p>\n");
        return;
    }
    let first = exchanges.iter().map(|x| x.at_ms).min().unwrap_or(0);
    let span = exchanges.iter().map(|x| x.at_ms).max().unwrap_or(0).saturating_sub(first);
    let _ = writeln!(
        out,
        "<h3>Exchanges ({}, over {} ms)</h3><div class=\"scroll\"><table class=\"exchanges\"><thead><tr>\
         <th>#</th><th>at ms</th><th>+ms</th><th>timeline</th><th>request</th><th>status</th><th>bytes</th>\
         <th>fault that fired</th></tr></thead><tbody>",
        exchanges.len(),
        span
    );
    let mut previous = first;
    for x in exchanges {
        let left = (x.at_ms - first) as f64 * 100.0 / span.max(1) as f64;
        let mut class = format!("s{}", x.status / 100);
        if x.fault.is_some() {
            class.push_str(" fault");
        }
        if cited.contains(&x.seq) {
            class.push_str(" cited");
        }
        let _ = write!(
            out,
            "<tr id=\"case-{index}-x-{seq}\" class=\"{class}\"><td class=\"mono\">{seq}</td><td class=\"mono\">{at}</td>\
             <td class=\"mono\">{delta}</td><td><div class=\"track\"><i style=\"left:{left:.1}%\"></i></div></td>\
             <td class=\"mono url\">{} {}</td><td class=\"mono st\">{}</td><td class=\"mono\">{}</td><td>",
            E(&x.method),
            E(&x.url),
            x.status,
            x.bytes,
            seq = x.seq,
            at = x.at_ms,
            delta = x.at_ms.saturating_sub(previous),
        );
        if let Some(fault) = &x.fault {
            let _ = write!(out, "<span class=\"mono fault-name\">{}</span>", E(fault));
        }
        out.push_str("</td></tr>\n");
        previous = x.at_ms;
    }
    out.push_str("</tbody></table></div>\n");
}

fn output(out: &mut String, o: &OutputReport) {
    out.push_str("<h3>Output against the export</h3>");
    let nz = |n: u64| if n > 0 { " class=\"nz\"" } else { "" };
    let _ = writeln!(
        out,
        "<table class=\"output\"><thead><tr><th>expected resources</th><th>found</th><th>missing</th><th>extra</th>\
         <th>duplicated</th><th>corrupted</th><th>deleted found / expected</th><th>errors found / expected</th>\
         <th>deleted but present</th><th>other lines</th><th>files</th></tr></thead><tbody><tr>\
         <td>{}</td><td>{}</td><td{}>{}</td><td{}>{}</td><td{}>{}</td><td{}>{}</td><td{}>{} / {}</td>\
         <td{}>{} / {}</td><td{}>{}</td><td>{}</td><td>{}</td></tr></tbody></table>",
        o.expected_resources,
        o.resources,
        nz(o.missing),
        o.missing,
        nz(o.extra),
        o.extra,
        nz(o.duplicated),
        o.duplicated,
        nz(o.corrupted),
        o.corrupted,
        nz(o.deleted.missing + o.deleted.extra),
        o.deleted.found,
        o.deleted.expected,
        nz(o.errors.missing + o.errors.extra),
        o.errors.found,
        o.errors.expected,
        nz(o.deleted_but_present),
        o.deleted_but_present,
        o.not_resources,
        o.files
    );
    if o.too_large {
        out.push_str("<p class=\"nz\">The output was too large; the rest was not read.</p>\n");
    }
    for why in &o.unreadable {
        let _ = writeln!(out, "<p class=\"nz\">Unreadable: <span class=\"mono\">{}</span></p>", E(why));
    }
    if o.details.is_empty() {
        return;
    }
    out.push_str(
        "<table class=\"diff\"><thead><tr><th>type</th><th>difference</th><th>count</th><th>examples</th></tr></thead><tbody>\n",
    );
    for (ty, kinds) in &o.details {
        for (kind, diff) in kinds {
            let examples: Vec<String> = diff.examples.iter().map(|e| E(e).to_string()).collect();
            let _ = writeln!(
                out,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td class=\"nz\">{}</td><td class=\"mono\">{}</td></tr>",
                E(ty),
                E(kind),
                diff.count,
                examples.join(", ")
            );
        }
    }
    out.push_str("</tbody></table>\n");
}
