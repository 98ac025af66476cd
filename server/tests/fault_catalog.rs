//! The fault catalog page (docs/faults.md) against the fault types: every
//! example parses, and every kind is documented.

use bulkmock_server::Fault;
use bulkmock_server::faults::file;

const PAGE: &str = include_str!("../../docs/faults.md");

fn toml_blocks() -> Vec<&'static str> {
    PAGE.split("```toml").skip(1).map(|b| b.split("```").next().unwrap()).collect()
}

#[test]
fn every_example_on_the_page_is_a_valid_plan() {
    let blocks = toml_blocks();
    assert!(blocks.len() >= 15);
    for (i, block) in blocks.iter().enumerate() {
        let plan =
            file::parse(block, &format!("docs/faults.md block {}", i + 1), false).unwrap_or_else(|e| panic!("{e}"));
        assert!(!plan.rules.is_empty());
    }
}

#[test]
fn every_fault_kind_has_a_section_and_every_section_a_kind() {
    let documented: Vec<&str> =
        PAGE.lines().filter_map(|l| l.strip_prefix("### `").and_then(|r| r.strip_suffix('`'))).collect();
    let mut examples = std::collections::BTreeSet::new();
    for block in toml_blocks() {
        for rule in file::parse(block, "docs", false).unwrap().rules {
            examples.insert(rule.fault.kind_name());
        }
    }
    for kind in &documented {
        assert!(examples.contains(kind), "section {kind} has no example of its kind");
    }
    // Every variant of Fault appears in an example (the match keeps this list complete).
    let all = |f: &Fault| match f {
        Fault::Respond { .. }
        | Fault::Delay { .. }
        | Fault::Truncate { .. }
        | Fault::Drip { .. }
        | Fault::Header { .. }
        | Fault::InProgress { .. }
        | Fault::Vanish
        | Fault::ExpireUrls
        | Fault::Revoke
        | Fault::Manifest { .. }
        | Fault::CapabilityUrls { .. }
        | Fault::Content { .. }
        | Fault::Gzip { .. }
        | Fault::Range { .. }
        | Fault::Redirect { .. }
        | Fault::TokenLifetime { .. }
        | Fault::TokenResponse { .. }
        | Fault::Stall { .. }
        | Fault::Reset { .. }
        | Fault::NarrowScope { .. }
        | Fault::ClockSkew { .. }
        | Fault::Unreachable
        | Fault::Rotated
        | Fault::RelativeEndpoints => f.kind_name(),
    };
    let _ = all;
    let kinds = [
        "relative_endpoints",
        "respond",
        "delay",
        "truncate",
        "drip",
        "stall",
        "reset",
        "header",
        "in_progress",
        "vanish",
        "expire_urls",
        "revoke",
        "manifest",
        "capability_urls",
        "content",
        "gzip",
        "range",
        "redirect",
        "token_lifetime",
        "token_response",
        "narrow_scope",
        "clock_skew",
        "unreachable",
        "rotated",
    ];
    assert_eq!(examples.len(), kinds.len(), "{examples:?}");
    for kind in kinds {
        assert!(documented.contains(&kind), "fault kind {kind} is not documented");
    }
}

/// Each kind (and each variant that differs) with the wire invariants it breaks.
const BREAKS: &[(&str, &str)] = &[
    ("`respond`, `body = \"outcome\"` or `\"transient\"`", r#"{"kind":"respond","status":503}"#),
    ("`respond`, `body = \"oauth\"`", r#"{"kind":"respond","status":400,"body":"oauth"}"#),
    ("`respond`, `body = \"html\"`", r#"{"kind":"respond","status":502,"body":"html"}"#),
    ("`respond`, `body = \"empty\"`", r#"{"kind":"respond","status":500,"body":"empty"}"#),
    ("`truncate`, `reset`", r#"{"kind":"reset","after_bytes":10}"#),
    ("`manifest`: `v4_ballot`, `not_json`, `output_missing`", r#"{"kind":"manifest","variant":"not_json"}"#),
    ("`manifest`: `wrong_count`", r#"{"kind":"manifest","variant":"wrong_count"}"#),
    ("`manifest`: `sha256_mismatch`", r#"{"kind":"manifest","variant":"sha256_mismatch"}"#),
    (
        "`manifest`: `unknown_fields`, `empty_output`, `partial_success`",
        r#"{"kind":"manifest","variant":"empty_output"}"#,
    ),
    (
        "`content`: `malformed_line`, `blank_line`, `no_trailing_newline`, `bom`, `invalid_utf8`",
        r#"{"kind":"content","mutation":"bom"}"#,
    ),
    ("`content`: `wrong_type`", r#"{"kind":"content","mutation":"wrong_type"}"#),
    ("`content`: `duplicate_line`, `duplicate_across_files`", r#"{"kind":"content","mutation":"duplicate_line"}"#),
    ("`content`: `crlf`, `huge_line`, `missing_required`", r#"{"kind":"content","mutation":"crlf"}"#),
    ("`gzip`: `corrupt`", r#"{"kind":"gzip","mode":"corrupt"}"#),
    ("`gzip`: `no_header`", r#"{"kind":"gzip","mode":"no_header"}"#),
    ("`range`: `ignore`", r#"{"kind":"range","mode":"ignore"}"#),
    ("`range`: `unsatisfiable`", r#"{"kind":"range","mode":"unsatisfiable"}"#),
    ("`relative_endpoints`", r#"{"kind":"relative_endpoints"}"#),
    ("`token_response`", r#"{"kind":"token_response","token_type":"Bearer"}"#),
    (
        "`header` `Content-Location` or `Location`",
        r#"{"kind":"header","name":"Content-Location","value":"{relative}"}"#,
    ),
    ("`header` `Content-Length`", r#"{"kind":"header","name":"Content-Length","value":"1"}"#),
    ("`header` `Content-Encoding`", r#"{"kind":"header","name":"Content-Encoding","value":""}"#),
    (
        "`header` `Content-Type`, `Retry-After`, `Cache-Control`, `Content-Range`",
        r#"{"kind":"header","name":"Content-Type","value":"text/plain"}"#,
    ),
    ("`header`, any other name", r#"{"kind":"header","name":"ETag","value":"\"{n}\""}"#),
    (
        "`delay`, `in_progress`, `vanish`, `expire_urls`, `revoke`, `capability_urls`, `redirect`, `token_lifetime`, `narrow_scope`, `clock_skew`, `unreachable`, `rotated`, `drip`, `stall`",
        r#"{"kind":"drip","bytes_per_s":100}"#,
    ),
];

/// docs/faults.md's table of what each kind breaks is what `Fault::breaks` says.
#[test]
fn the_page_lists_the_invariants_each_kind_breaks() {
    let mut table = String::from("| fault | breaks on purpose |\n| --- | --- |\n");
    for (label, json) in BREAKS {
        let fault: Fault = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let names: Vec<String> = fault.breaks().iter().map(|i| format!("`{}`", i.name())).collect();
        let breaks = if names.is_empty() { "nothing".to_string() } else { names.join(", ") };
        table.push_str(&format!("| {label} | {breaks} |\n"));
    }
    assert!(PAGE.contains(&table), "docs/faults.md should hold this table:\n{table}");
    for invariant in bulkmock_server::faults::invariants::Invariant::ALL {
        assert!(PAGE.contains(&format!("| `{}` |", invariant.name())), "{} is not described", invariant.name());
    }
}

/// Each kind's section says where it works, as `proxy::support` decides:
/// "**serve and proxy**" or "**serve only**", on the line after the heading;
/// and every rule of a serve-only kind is refused by the proxy's check.
#[test]
fn each_kind_says_whether_it_works_through_the_proxy() {
    use bulkmock_server::proxy::support::{Support, check_rule, support};
    let mut faults = std::collections::BTreeMap::new();
    for block in toml_blocks() {
        for rule in file::parse(block, "docs", false).unwrap().rules {
            faults.entry(rule.fault.kind_name()).or_insert(rule);
        }
    }
    let lines: Vec<&str> = PAGE.lines().collect();
    let mut seen = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(kind) = line.strip_prefix("### `").and_then(|r| r.strip_suffix('`')) else { continue };
        let marker = lines.get(i + 2).copied().unwrap_or_default();
        let rule = &faults[kind];
        let documented = if marker.starts_with("**serve and proxy**") {
            true
        } else if marker.starts_with("**serve only**") {
            false
        } else {
            panic!(
                "section {kind}: the line after the heading should say **serve and proxy** or **serve only**, not {marker:?}"
            )
        };
        assert_eq!(documented, support(&rule.fault) == Support::ServeAndProxy, "section {kind} says {marker:?}");
        if !documented {
            let refused = check_rule(rule).expect_err(kind);
            assert!(refused.contains(&format!("`{kind}`")) && refused.contains("bulkmock serve"), "{refused}");
        }
        seen += 1;
    }
    assert_eq!(seen, faults.len(), "every kind has a section with its marker");
}
