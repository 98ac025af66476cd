//! The requirement matrix: one row per requirement ID the checks cite, its
//! verdict counts, then one column per case coloured by the worst verdict of
//! the case's checks citing it.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{E, RunReport, verdict_class};
use crate::checks::{Level, Verdict};
use crate::requirements;

/// Columns before the case columns (the filter script hides case columns by index).
const OFFSET: usize = 8;

/// Verdicts in the order of the count columns.
const COUNTED: [Verdict; 5] = [Verdict::Pass, Verdict::Fail, Verdict::Warn, Verdict::Info, Verdict::Skip];

/// One requirement across the cases.
struct Row {
    /// The strongest level of the checks citing it.
    level: Level,
    /// Per case, the worst verdict of the checks citing it (`None`: not cited).
    cells: Vec<Option<Verdict>>,
}

/// How bad a verdict is: the worst one stands for a requirement in a case.
fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Skip => 0,
        Verdict::Pass => 1,
        Verdict::Info => 2,
        Verdict::Warn => 3,
        Verdict::Fail => 4,
    }
}

fn rows(report: &RunReport) -> BTreeMap<&str, Row> {
    let n = report.cases.len();
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for (i, case) in report.cases.iter().enumerate() {
        for check in &case.checks {
            for id in &check.requirements {
                let row = rows.entry(id).or_insert_with(|| Row { level: check.level, cells: vec![None; n] });
                row.level = row.level.min(check.level);
                let cell = &mut row.cells[i];
                if cell.is_none_or(|v| rank(check.verdict) > rank(v)) {
                    *cell = Some(check.verdict);
                }
            }
        }
    }
    rows
}

/// Writes the matrix section.
pub(super) fn write(out: &mut String, report: &RunReport) {
    out.push_str("<h2 id=\"matrix\">Requirement matrix</h2>\n");
    let rows = rows(report);
    if rows.is_empty() {
        out.push_str("<p class=\"muted\">No check ran.</p>\n");
        return;
    }
    out.push_str(
        "<p class=\"muted\">One row per requirement ID the checks cite, one column per case (in case order; \
         hover a column head for the case, click it for its evidence). A cell is the worst verdict of the \
         case's checks citing the requirement.</p>\n",
    );
    let _ = write!(
        out,
        "<div class=\"scroll\"><table class=\"matrix\" id=\"matrix-table\" data-offset=\"{OFFSET}\">\n<thead><tr>\
         <th>requirement</th><th>level</th><th>text</th>\
         <th class=\"n\">pass</th><th class=\"n\">fail</th><th class=\"n\">warn</th><th class=\"n\">info</th>\
         <th class=\"n\">skip</th>"
    );
    for (i, case) in report.cases.iter().enumerate() {
        let v = case.verdict.as_str();
        let _ = write!(
            out,
            "<th class=\"c\"><a href=\"#case-{i}\" class=\"{}\" title=\"{}: {v}\"></a></th>",
            verdict_class(v),
            E(&case.id)
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (id, row) in &rows {
        let count = |v: Verdict| row.cells.iter().filter(|c| **c == Some(v)).count();
        let worst = row.cells.iter().flatten().copied().max_by_key(|v| rank(*v)).unwrap_or(Verdict::Skip);
        let bad = count(Verdict::Fail) + count(Verdict::Warn) > 0;
        let text = requirements::find(id).map_or("", |r| r.text);
        let _ = write!(
            out,
            "<tr data-level=\"{}\" data-bad=\"{}\"><td class=\"mono t-{}\"><b>{}</b></td><td>{}</td>\
             <td class=\"text\" title=\"{}\">{}</td>",
            row.level.as_str(),
            u8::from(bad),
            worst.as_str(),
            E(id),
            row.level.as_str(),
            E(text),
            E(text)
        );
        for v in COUNTED {
            let n = count(v);
            let class = if n > 0 && matches!(v, Verdict::Fail | Verdict::Warn) { "n nz" } else { "n" };
            let _ = write!(out, "<td class=\"{class}\">{n}</td>");
        }
        for cell in &row.cells {
            match cell {
                Some(v) => {
                    let _ = write!(out, "<td class=\"c\"><i class=\"{}\"></i></td>", verdict_class(v.as_str()));
                }
                None => out.push_str("<td class=\"c\"><i></i></td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n<div class=\"legend\">");
    for v in ["pass", "fail", "warn", "info", "skip"] {
        let _ = write!(out, "<span><i class=\"{}\"></i>{v}</span>", verdict_class(v));
    }
    out.push_str("<span><i class=\"v-error\"></i>error or timeout (column head)</span></div>\n");
}
