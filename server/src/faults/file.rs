//! Fault plan files (`bulkmock serve --faults plan.toml`), TOML or JSON.
//! Errors name the file and line.

use std::path::Path;

use super::model::FaultPlan;

/// Reads and validates a plan file; `.json` files are JSON, anything else TOML.
pub fn load(path: &Path) -> Result<FaultPlan, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json = path.extension().is_some_and(|x| x == "json");
    parse(&text, &path.display().to_string(), json)
}

/// Parses and validates a plan; `name` prefixes error messages.
pub fn parse(text: &str, name: &str, json: bool) -> Result<FaultPlan, String> {
    let plan: FaultPlan = if json {
        serde_json::from_str(text).map_err(|e| format!("{name}:{}:{}: {e}", e.line(), e.column()))?
    } else {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].lines().count().max(1));
            format!("{name}:{line}: {}", e.message())
        })?
    };
    for (i, rule) in plan.rules.iter().enumerate() {
        if let Err(message) = rule.validate() {
            let at = if json {
                format!("{name}: fault rule {}", i + 1)
            } else {
                let line =
                    text.lines().enumerate().filter(|(_, l)| l.trim() == "[[fault]]").nth(i).map_or(0, |(n, _)| n + 1);
                format!("{name}:{line}")
            };
            return Err(format!("{at}: {message}"));
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::model::{Fault, Target, Trigger};

    #[test]
    fn toml_plans_parse_into_rules() {
        let plan = parse(
            r#"
[[fault]]
name = "status 503 twice"
on = "status"
times = 2
fault = { kind = "respond", status = 503, body = "transient", retry_after_s = 1 }

[[fault]]
on = "file"
resource_type = "Observation"
when = { probability = 0.5 }
fault = { kind = "truncate", fraction = 0.5 }
"#,
            "plan.toml",
            false,
        )
        .unwrap();
        assert_eq!(plan.rules.len(), 2);
        assert_eq!(plan.rules[0].on, Target::Status);
        assert_eq!(plan.rules[0].times, Some(2));
        assert_eq!(plan.rules[1].when, Trigger::Probability(0.5));
        assert!(matches!(plan.rules[1].fault, Fault::Truncate { fraction: Some(_), .. }));
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = parse("[[fault]]\non = \"status\"\nfault = { kind = \"explode\" }\n", "p.toml", false).unwrap_err();
        assert!(err.starts_with("p.toml:3:"), "{err}");
        let err = parse(
            "[[fault]]\non = \"file\"\nwhen = { probability = 2.0 }\nfault = { kind = \"delay\", delay_ms = 1 }\n",
            "p.toml",
            false,
        )
        .unwrap_err();
        assert!(err.starts_with("p.toml:1:") && err.contains("probability"), "{err}");
        let err = parse("{\"fault\": [{\"on\": \"nowhere\"}]}", "p.json", true).unwrap_err();
        assert!(err.starts_with("p.json:1:"), "{err}");
    }
}
