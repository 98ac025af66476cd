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
