//! Command and config templates: `{name}` stands for a variable, `{{` and `}}`
//! for literal braces. A `{name}` that is not a variable is an error before
//! anything runs.

use std::collections::BTreeMap;

/// Every template variable, with what it holds. Each is also exported to the
/// client's environment as `BULKMOCK_<NAME>`.
pub const VARIABLES: &[(&str, &str)] = &[
    ("fhir_base", "the FHIR base URL of the case's server"),
    ("token_url", "the token endpoint URL (empty when authorization is off)"),
    ("client_id", "the registered client id"),
    ("private_key_pem", "path of the private key, PKCS#8 PEM"),
    ("private_key_jwk", "path of the private key as a JWK (JSON)"),
    ("jwks", "path of the public JWKS (JSON)"),
    ("jwks_url", "URL of the public JWKS when the case registers by URL (else empty)"),
    ("ca_cert", "path of the CA certificate (PEM) to trust when the case's server speaks HTTPS (else empty)"),
    ("kid", "the key id"),
    ("alg", "RS384 or ES384"),
    ("scope", "the scopes to ask for"),
    ("out_dir", "the folder to write the export to"),
    ("level", "system, patient or group"),
    ("group_id", "the Group id (group level, else empty)"),
    ("types", "_type values, comma-separated (may be empty)"),
    ("since", "_since (may be empty)"),
    ("until", "_until (may be empty)"),
    ("type_filters", "_typeFilter values, separated by spaces (may be empty)"),
    ("elements", "_elements values, comma-separated (may be empty)"),
    ("kickoff_method", "GET or POST"),
    ("patient", "the `patient` parameter's references, comma-separated (may be empty; a POST kick-off)"),
    ("include_associated_data", "includeAssociatedData values, comma-separated (may be empty)"),
    ("organize_output_by", "organizeOutputBy (may be empty)"),
    ("allow_partial_manifests", "allowPartialManifests: true or false"),
    ("output_format", "_outputFormat (may be empty: the server's default, NDJSON)"),
    ("prefer", "the Prefer header value the kick-off sends: respond-async, with separate-export-status when asked"),
    ("request_json", "the whole request as one JSON object (every field above, arrays as arrays, absent ones null)"),
    ("config_file", "path of the rendered --client-config-template (else empty)"),
    ("case_id", "the case id"),
    ("case_dir", "the case's own folder"),
    ("seed", "the run's seed"),
    (
        "run",
        "in an [incremental] case: full on the first run, incremental on the later ones (out_dir holds the \
         client's state; the next _since is the previous run's transactionTime); else empty",
    ),
];

/// Whether `name` is a template variable.
pub fn is_variable(name: &str) -> bool {
    VARIABLES.iter().any(|(n, _)| *n == name)
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; `name` (a flag or file) prefixes errors, which give the line.
    pub fn parse(text: &str, name: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if let Some(after) = tail.strip_prefix('}') {
                literal.push('}');
                rest = after;
                continue;
            }
            let ident: String = tail[1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !ident.is_empty() && tail[1 + ident.len()..].starts_with('}') {
                if !is_variable(&ident) {
                    let line = text[..text.len() - tail.len()].matches('\n').count() + 1;
                    return Err(format!(
                        "{name}:{line}: unknown template variable {{{ident}}}; variables are {}",
                        VARIABLES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ));
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Var(ident.clone()));
                rest = &tail[2 + ident.len()..];
            } else {
                literal.push('{');
                rest = &tail[1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// Renders with `vars`; each value passes through `escape` (identity for
    /// config files, shell quoting for command lines).
    pub fn render(&self, vars: &BTreeMap<String, String>, escape: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(name) => out.push_str(&escape(vars.get(name).map_or("", String::as_str))),
            }
        }
        out
    }

    /// Whether the template uses variable `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var(n) if n == name))
    }
}

/// Quotes `value` for `sh` when it holds anything but safe characters.
pub fn shell_quote(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c);
    if !value.is_empty() && value.chars().all(safe) {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_render_and_braces_escape() {
        let t = Template::parse("{\"base\": \"{fhir_base}\", \"x\": {{1}}}", "cfg").unwrap();
        let vars = BTreeMap::from([("fhir_base".to_string(), "http://h/fhir".to_string())]);
        assert_eq!(t.render(&vars, str::to_string), "{\"base\": \"http://h/fhir\", \"x\": {1}}");
        assert!(t.uses("fhir_base") && !t.uses("out_dir"));
    }

    #[test]
    fn unknown_variables_are_errors_with_line() {
        let err = Template::parse("a\nrun --x {fhir_bse}", "--client-cmd").unwrap_err();
        assert!(err.starts_with("--client-cmd:2: unknown template variable {fhir_bse}"), "{err}");
    }

    #[test]
    fn shell_quoting_keeps_values_whole() {
        assert_eq!(shell_quote("/tmp/a b/it's"), "'/tmp/a b/it'\\''s'");
        assert_eq!(shell_quote("http://127.0.0.1:8/fhir"), "http://127.0.0.1:8/fhir");
        assert_eq!(shell_quote(""), "''");
    }
}
