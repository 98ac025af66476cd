//! The client requirements of the project's requirements list (section 3:
//! CLI-nnn), each with its strength, how it can be observed, and a short
//! paraphrase: what coverage tables and reports cite.

/// How a requirement can be observed by the harness (the list's `obs:` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Obs {
    /// On the wire (the transcript).
    Wire,
    /// In the output folder.
    Output,
    /// Both.
    WireOutput,
    /// At set-up (registration, before the run).
    Setup,
    /// Not observable.
    None,
}

impl Obs {
    /// The tag as in the requirements list.
    pub fn as_str(self) -> &'static str {
        match self {
            Obs::Wire => "wire",
            Obs::Output => "output",
            Obs::WireOutput => "wire+output",
            Obs::Setup => "setup",
            Obs::None => "—",
        }
    }
}

/// One client requirement.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    /// `CLI-nnn`.
    pub id: &'static str,
    /// The strength as written in the list (`SHALL`, `SHOULD`, `MAY`, `—` ...).
    pub strength: &'static str,
    /// How it can be observed.
    pub obs: Obs,
    /// What it asks, in a few words.
    pub text: &'static str,
    /// Why no scenario can exercise it, where that is so.
    pub untestable: Option<&'static str>,
}

const fn r(id: &'static str, strength: &'static str, obs: Obs, text: &'static str) -> Requirement {
    Requirement { id, strength, obs, text, untestable: None }
}

const fn u(id: &'static str, strength: &'static str, obs: Obs, text: &'static str, why: &'static str) -> Requirement {
    Requirement { id, strength, obs, text, untestable: Some(why) }
}

/// Every client requirement, in list order.
pub const CLIENT: &[Requirement] = &[
    u(
        "CLI-001",
        "SHALL",
        Obs::Setup,
        "register a public-key JWKS (by URL or inline) before running",
        "set-up: the harness registers each case's client itself (inline or by URL)",
    ),
    u("CLI-002", "SHALL", Obs::None, "keep the private key secret", "not observable (obs: —)"),
    u(
        "CLI-003",
        "SHALL",
        Obs::Wire,
        "a hosted JWKS is reachable without authentication over TLS",
        "the JWKS URL in cases is hosted by the harness, not the client",
    ),
    r("CLI-004", "SHALL", Obs::Wire, "JWKs carry kty, kid and bare key values; kids unique"),
    r("CLI-005", "SHALL", Obs::Wire, "sign with both RS384 and ES384"),
    u("CLI-006", "SHALL", Obs::None, "the client is confidential", "not observable (obs: —)"),
    r("CLI-007", "SHALL", Obs::Wire, "use the client_id issued at registration"),
    r("CLI-010", "MAY", Obs::Wire, "discover endpoints with GET .well-known/smart-configuration"),
    u(
        "CLI-011",
        "SHOULD",
        Obs::Wire,
        "resolve relative endpoint URLs against the FHIR base",
        "no fault makes the discovery document's endpoints relative yet",
    ),
    r("CLI-020", "SHALL", Obs::Wire, "a fresh, single-use JWT for every token request"),
    r("CLI-021", "REQ", Obs::Wire, "assertion header: alg, kid, typ JWT (jku only if registered)"),
    r(
        "CLI-022",
        "SHALL",
        Obs::Wire,
        "claims: iss = sub = client_id, aud exactly the token URL, exp within 5 minutes, unique jti",
    ),
    r("CLI-023", "SHALL", Obs::Wire, "sign with the private key, preferably RS384 or ES384"),
    r(
        "CLI-024",
        "SHALL",
        Obs::Wire,
        "token request: a form with scope, grant_type, client_assertion_type, client_assertion",
    ),
    r("CLI-025", "—", Obs::Wire, "ask for system/ scopes in the syntax the server supports"),
    r("CLI-026", "best practice", Obs::Output, "inspect the granted scope; do not assume a full grant"),
    r("CLI-027", "—", Obs::Wire, "a new token (new assertion, new jti) when the old one expires or is refused"),
    r(
        "CLI-028",
        "—",
        Obs::WireOutput,
        "handle OAuth error bodies and 400/401 at the token endpoint without crashing or looping",
    ),
    r("CLI-029", "—", Obs::Output, "compare token_type case-insensitively (bearer / Bearer)"),
    r("CLI-030", "SHALL", Obs::Wire, "send the bearer token on kick-off, status, delete and files that require it"),
    r("CLI-031", "SHOULD NOT", Obs::Wire, "do not send the token to other servers"),
    r("CLI-032", "SHALL", Obs::Wire, "every exchange over TLS 1.2+"),
    r("CLI-040", "SHOULD", Obs::Wire, "kick-off sends Accept: application/fhir+json"),
    r("CLI-041", "SHOULD", Obs::Wire, "kick-off sends Prefer: respond-async"),
    r("CLI-042", "MAY", Obs::WireOutput, "with separate-export-status, read the job state from X-Export-Status"),
    u(
        "CLI-043",
        "MAY",
        Obs::Wire,
        "may send Prefer: handling=lenient",
        "the client's own choice: a scenario cannot ask for it",
    ),
    r("CLI-044", "MAY", Obs::Wire, "may repeat comma-valued parameters (v2-3)"),
    r("CLI-045", "SHALL NOT", Obs::Wire, "never comma-join values in v4-ballot Parameters"),
    r("CLI-046", "—", Obs::Wire, "patient only in POST Parameters, at Patient or Group level"),
    r(
        "CLI-047",
        "SHALL NOT / SHALL",
        Obs::Wire,
        "_typeFilter: one query per parameter, never comma-joined across types (v3+)",
    ),
    r("CLI-048", "SHOULD", Obs::Output, "cope with servers that ignore _typeFilter"),
    u(
        "CLI-049",
        "SHOULD",
        Obs::Wire,
        "check the CapabilityStatement for search parameters usable in _typeFilter",
        "no check yet: a client may know the parameters from configuration",
    ),
    u(
        "CLI-050",
        "SHOULD",
        Obs::None,
        "filter by clinical date with _typeFilter, not _since/_until",
        "not observable (obs: —)",
    ),
    r("CLI-051", "—", Obs::Wire, "_since/_until are FHIR instants; _outputFormat an NDJSON spelling"),
    r(
        "CLI-052",
        "—",
        Obs::Output,
        "202 + absolute Content-Location is success; 4xx/5xx + OperationOutcome is failure, reported",
    ),
    r("CLI-053", "—", Obs::Wire, "on a kick-off 429 + Retry-After, wait and retry (or report); never hammer"),
    r("CLI-054", "informative", Obs::Wire, "incremental pulls send the last transactionTime as the next _since"),
    r("CLI-060", "MAY", Obs::Wire, "poll the absolute Content-Location, which may be on another host"),
    r("CLI-061", "SHOULD", Obs::Wire, "back off exponentially between polls"),
    r("CLI-062", "SHOULD", Obs::Wire, "let Retry-After set the next poll, as delta-seconds or HTTP-date"),
    r("CLI-063", "SHOULD", Obs::Wire, "status requests send Accept: application/json"),
    r("CLI-064", "MAY", Obs::Output, "X-Progress is free text: never require a format"),
    r("CLI-065", "—", Obs::Wire, "a 429 on status means slow down, never job failure"),
    r(
        "CLI-066",
        "—",
        Obs::WireOutput,
        "a transient OperationOutcome means retry later; otherwise the job failed: stop and report",
    ),
    r("CLI-067", "—", Obs::Output, "survive error bodies that are not FHIR (HTML from infrastructure)"),
    r(
        "CLI-068",
        "—",
        Obs::WireOutput,
        "with allowPartialManifests: download partial pages, follow next links, no duplicates",
    ),
    r("CLI-069", "—", Obs::Output, "a 200 means complete: parse the manifest"),
    r("CLI-070", "—", Obs::Output, "a 200 may be a partial success: read the error files"),
    r("CLI-071", "—", Obs::Output, "tolerate manifest shapes: v4-ballot outcome, missing request, unknown fields"),
    r("CLI-080", "MAY", Obs::Wire, "expired file URLs (403/404/410): fetch the manifest again for fresh ones"),
    r(
        "CLI-081",
        "SHALL",
        Obs::Wire,
        "with requiresAccessToken true, a valid token on every file and attachment request",
    ),
    r("CLI-082", "SHALL NOT", Obs::Wire, "with requiresAccessToken false, no token on file requests"),
    r("CLI-083", "SHOULD", Obs::Wire, "file requests send Accept-Encoding with gzip"),
    r("CLI-084", "SHALL / MAY", Obs::Output, "accept plain and gzip bodies, honouring Content-Encoding"),
    r("CLI-085", "MAY", Obs::Wire, "Accept on file requests, if sent, is application/fhir+ndjson"),
    r(
        "CLI-086",
        "—",
        Obs::WireOutput,
        "download every output, deleted and error file; a type may span files; output may be empty",
    ),
    r("CLI-087", "—", Obs::Output, "deleted lines are DELETE Bundles: remove those resources, never add them"),
    r("CLI-088", "—", Obs::Output, "error files hold OperationOutcomes of any severity"),
    r("CLI-089", "—", Obs::Output, "organizeOutputBy: parse header lines, join blocks across files"),
    r("CLI-090", "—", Obs::Output, "relative or absolute references; SUBSETTED resources never overwrite full ones"),
    r("CLI-091", "—", Obs::Wire, "attachments follow the manifest's requiresAccessToken rule"),
    r(
        "CLI-092",
        "—",
        Obs::Output,
        "check NDJSON integrity: one resource per line, counts match, a cut last line is an error",
    ),
    r("CLI-093", "—", Obs::WireOutput, "file 4xx/5xx: retry transient ones, report fatal ones"),
    r("CLI-100", "MAY", Obs::Wire, "DELETE the status URL when done; expect 202, then 404"),
];

/// The client requirement `id`.
pub fn find(id: &str) -> Option<&'static Requirement> {
    CLIENT.iter().find(|r| r.id == id)
}
