//! The typed fault plan: every way of configuring faults parses into these
//! types (the Rust builder, a plan file, the admin API). Units are in the field
//! names (`delay_ms`, `after_bytes`, `retry_after_s`).

use serde::{Deserialize, Serialize};

/// Where a fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `POST /auth/token`.
    Token,
    /// `GET metadata` and `.well-known/smart-configuration`.
    Metadata,
    /// Any `$export` kick-off.
    Kickoff,
    /// `GET` a status URL or manifest page.
    Status,
    /// `DELETE` a status URL.
    Delete,
    /// `GET` an output, deleted or error file.
    File,
    /// `GET` an attachment.
    Attachment,
    /// The server's own fetch of a client's JWKS URL.
    Jwks,
}

/// When a matching request triggers the fault.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Every matching request.
    Every,
    /// Only the n-th matching request (1-based).
    Nth(u64),
    /// The first n matching requests.
    First(u64),
    /// The n-th matching request and every one after it (e.g. a fatal failure after n polls).
    From(u64),
    /// Each matching request with this probability, drawn from the seeded generator.
    Probability(f64),
    /// Matching requests at least this many seconds into their job (status, delete
    /// and file requests), or after the server started (other requests).
    AfterS(f64),
}

/// What happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer with this status and body instead of handling the request.
    Respond {
        /// The HTTP status.
        status: u16,
        /// The body shape.
        #[serde(default)]
        body: BodyKind,
        /// For `oauth` bodies the error code, for `outcome` bodies the IssueType code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// The human-readable text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// `Retry-After` as delay-seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u64>,
        /// `Retry-After` as an HTTP-date this many seconds ahead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_date_s: Option<u64>,
    },
    /// Wait before handling the request normally.
    Delay {
        /// How long.
        delay_ms: u64,
    },
    /// Send the response headers (with the full `Content-Length`) but only part of the body, then close.
    Truncate {
        /// Bytes of body sent before the cut.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_bytes: Option<u64>,
        /// Share of the body sent before the cut (0 to 1), when `after_bytes` is not given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fraction: Option<f64>,
        /// Move the cut back to just after a newline, so the body ends with complete lines.
        #[serde(default)]
        at_line_end: bool,
    },
    /// Answer a status poll with 202 "in progress" although the job is done (a slow job, by polls).
    InProgress {
        /// `Retry-After` seconds (absent when not given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u64>,
        /// `X-Progress` text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress: Option<String>,
    },
    /// The job disappears: it is forgotten and this and later requests get 404.
    Vanish,
    /// The export's file URLs expire: this request and any with an old URL get 410;
    /// a re-fetched manifest hands out fresh URLs (SRV-187).
    ExpireUrls,
    /// Revokes the presented access token; this and later requests with it get 401.
    Revoke,
    /// The manifest says `requiresAccessToken: false` and its file URLs carry a
    /// capability that works without a token and expires (SRV-183).
    CapabilityUrls {
        /// How long each capability URL works.
        ttl_s: u64,
    },
    /// Rewrites a complete manifest.
    Manifest {
        /// How.
        variant: ManifestVariant,
    },
    /// Damages the NDJSON of a file (served whole, without gzip or ranges).
    Content {
        /// How.
        mutation: ContentMutation,
        /// The 1-based line it applies to, where it applies to one line.
        #[serde(default = "first_line")]
        line: u64,
    },
    /// Gzip trouble: corrupt compressed bytes, or gzip bytes without `Content-Encoding`.
    Gzip {
        /// Which.
        mode: GzipMode,
    },
    /// Range trouble: `Range` ignored (200 with the whole file) or answered 416.
    Range {
        /// Which.
        mode: RangeMode,
    },
    /// Answers 307 to the same URL on another host name (`localhost` <-> `127.0.0.1`
    /// by default), as servers redirect to storage: by default the target carries a
    /// capability (`cap=`) that opens it without a bearer token, which a correct
    /// client must not send to another host (CLI-031).
    Redirect {
        /// The host name to redirect to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// Whether the target URL carries a capability that works without a token;
        /// `false` redirects to the bare URL, which then needs the token.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        capability: bool,
        /// How long each redirect capability works.
        #[serde(default = "redirect_ttl_s", skip_serializing_if = "is_redirect_ttl_s")]
        ttl_s: u64,
    },
    /// Issues tokens with this lifetime (token endpoint).
    TokenLifetime {
        /// Seconds.
        lifetime_s: u64,
    },
    /// Grants only these scopes of what was asked (token endpoint): a narrower grant.
    NarrowScope {
        /// The space-separated scopes the grant is limited to.
        scope: String,
    },
    /// The token endpoint's clock runs off by this many seconds when it checks assertion times.
    ClockSkew {
        /// Positive: the server is ahead; negative: behind.
        skew_s: i64,
    },
    /// The client's JWKS URL cannot be reached (the server's fetch fails).
    Unreachable,
    /// The client's JWKS URL answers with its keys rotated to new kids, so the
    /// assertion's `kid` is not found.
    Rotated,
    /// The discovery document's endpoint URLs become relative to the server's
    /// origin (`/auth/token`): a client must resolve them (CLI-011).
    RelativeEndpoints,
    /// Odd but parseable token responses (token endpoint).
    TokenResponse {
        /// Replace `token_type` (e.g. `Bearer`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_type: Option<String>,
        /// `expires_in`: `missing`, `string`, or unchanged.
        #[serde(default)]
        expires_in: ExpiresIn,
    },
    /// Resets the connection (TCP RST) after this many body bytes; 0 resets it before the headers.
    Reset {
        /// Body bytes sent before the reset.
        #[serde(default)]
        after_bytes: u64,
        /// Share of the (encoded) body sent before the reset (above 0, below 1),
        /// instead of `after_bytes`: acts on a body of any size and encoding.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fraction: Option<f64>,
    },
    /// Send the body slowly.
    Drip {
        /// Bytes per second.
        bytes_per_s: u64,
    },
    /// Send part of the body, then nothing for a while, then the rest.
    Stall {
        /// Bytes sent before the pause.
        #[serde(default)]
        after_bytes: u64,
        /// Share of the (encoded) body sent before the pause (above 0, below 1),
        /// instead of `after_bytes`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fraction: Option<f64>,
        /// Length of the pause.
        stall_ms: u64,
    },
    /// Replace (or add) a response header; an empty value removes it.
    Header {
        /// Header name.
        name: String,
        /// The value; `{relative}` stands for the original value made relative to the
        /// origin, `{other_host}` for the original value on the other host name
        /// (`localhost` and `127.0.0.1` swapped), `{n}` for how often the rule fired
        /// (an `ETag` that changes between attempts).
        value: String,
    },
}

fn first_line() -> u64 {
    1
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Default lifetime of a redirect capability.
const REDIRECT_TTL_S: u64 = 300;

fn redirect_ttl_s() -> u64 {
    REDIRECT_TTL_S
}

fn is_redirect_ttl_s(s: &u64) -> bool {
    *s == REDIRECT_TTL_S
}

/// How a `manifest` fault rewrites the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestVariant {
    /// The STU4-ballot shape: `outcome` for `error`, no `request`, no `type` on deleted/outcome items, `extension` an array.
    V4Ballot,
    /// Extra fields a client must ignore (`extension`, `fileSize`, vendor keys).
    UnknownFields,
    /// `output` is empty.
    EmptyOutput,
    /// Every `count` is one too high.
    WrongCount,
    /// The body is not JSON.
    NotJson,
    /// `output` is missing.
    OutputMissing,
    /// A partial success: an `error` file with an OperationOutcome for resources that could not be exported.
    PartialSuccess,
    /// The first output file's SHA-256 extension does not match its bytes (given
    /// even when the server's file digests are off).
    Sha256Mismatch,
}

/// How a `content` fault damages NDJSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentMutation {
    /// Line n is cut in the middle of its JSON, between two characters (still UTF-8).
    MalformedLine,
    /// An empty line after line n.
    BlankLine,
    /// Every line ends with CRLF.
    Crlf,
    /// The last line has no newline.
    NoTrailingNewline,
    /// The file starts with a UTF-8 byte order mark.
    Bom,
    /// Line n holds bytes that are not UTF-8.
    InvalidUtf8,
    /// Line n carries a 2 MB narrative.
    HugeLine,
    /// Line n's resourceType differs from the manifest's type.
    WrongType,
    /// Line n appears twice.
    DuplicateLine,
    /// The first resource of another file of the same type appears again at the end of this one.
    DuplicateAcrossFiles,
    /// Line n lacks the elements its profile requires (US Core where the type has
    /// one, e.g. Patient `identifier`, `name`, `gender`; see `faults::required`).
    MissingRequired,
}

/// Which gzip trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GzipMode {
    /// Bytes in the middle of the compressed stream are flipped.
    Corrupt,
    /// The body is gzip but `Content-Encoding` is missing.
    NoHeader,
}

/// Which Range trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeMode {
    /// The server ignores `Range` and sends the whole file with 200.
    Ignore,
    /// The server answers 416 to any `Range`.
    Unsatisfiable,
}

/// `expires_in` in an odd token response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiresIn {
    /// As issued.
    #[default]
    Unchanged,
    /// Left out.
    Missing,
    /// A string instead of a number.
    String,
}

/// The body of a `respond` fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// A FHIR OperationOutcome (code from `code`, default `exception`).
    #[default]
    Outcome,
    /// An OperationOutcome with a transient IssueType (`transient` unless `code` says otherwise).
    Transient,
    /// An HTML page, as infrastructure in front of a FHIR server sends.
    Html,
    /// An RFC 6749 error (`code`, default `temporarily_unavailable`).
    Oauth,
    /// No body.
    Empty,
}

/// One rule of a fault plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// A name for transcripts and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where it applies.
    pub on: Target,
    /// Only files (or kick-offs naming only types) of this resource type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Only the file with this index in the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_index: Option<usize>,
    /// Only requests of this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Only kick-offs (and their jobs' requests) of this export level: `system`, `patient`, `group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// When matching requests trigger it (default: every one).
    #[serde(default = "every")]
    pub when: Trigger,
    /// Retire the rule after this many uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// What happens.
    pub fault: Fault,
}

fn every() -> Trigger {
    Trigger::Every
}

impl FaultRule {
    /// A rule applying `fault` to every request of `on`.
    pub fn new(on: Target, fault: Fault) -> Self {
        FaultRule {
            name: None,
            on,
            resource_type: None,
            file_index: None,
            client_id: None,
            level: None,
            when: Trigger::Every,
            times: None,
            fault,
        }
    }
    /// Sets the trigger.
    pub fn when(mut self, when: Trigger) -> Self {
        self.when = when;
        self
    }
    /// Retires the rule after `n` uses ("503 twice, then succeed").
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }
    /// Restricts to one resource type.
    pub fn resource_type(mut self, ty: &str) -> Self {
        self.resource_type = Some(ty.to_string());
        self
    }
    /// Names the rule.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Checks values serde cannot: ranges and combinations.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.when, &self.fault) {
            (Trigger::Probability(p), _) if !(0.0..=1.0).contains(p) => {
                Err(format!("probability must be between 0 and 1, got {p}"))
            }
            (Trigger::Nth(0), _) => Err("nth counts from 1".into()),
            (_, Fault::Respond { status, .. }) if !(100..=599).contains(status) => {
                Err(format!("status {status} is not an HTTP status"))
            }
            (_, Fault::Truncate { after_bytes: None, fraction: None, .. }) => {
                Err("truncate needs after_bytes or fraction".into())
            }
            (_, Fault::Truncate { fraction: Some(f), .. }) if !(0.0..1.0).contains(f) => {
                Err(format!("fraction must be at least 0 and below 1, got {f}"))
            }
            (
                _,
                Fault::Reset { after_bytes, fraction: Some(f) } | Fault::Stall { after_bytes, fraction: Some(f), .. },
            ) if *after_bytes > 0 => Err(format!("give after_bytes ({after_bytes}) or fraction ({f}), not both")),
            (_, Fault::Reset { fraction: Some(f), .. } | Fault::Stall { fraction: Some(f), .. })
                if !(*f > 0.0 && *f < 1.0) =>
            {
                Err(format!("fraction must be above 0 and below 1, got {f}"))
            }
            (_, Fault::Drip { bytes_per_s: 0 }) => Err("bytes_per_s must be positive".into()),
            (_, Fault::Redirect { capability: true, ttl_s: 0, .. }) => Err("ttl_s must be positive".into()),
            (Trigger::From(0), _) => Err("from counts from 1".into()),
            _ if self.level.as_deref().is_some_and(|l| !matches!(l, "system" | "patient" | "group")) => {
                Err(format!("level must be system, patient or group, not {:?}", self.level.as_deref().unwrap_or("")))
            }
            (_, Fault::Content { line: 0, .. }) => Err("line counts from 1".into()),
            _ if !self.fault.applies_to(self.on) => {
                Err(format!("fault {} does not apply to {:?} requests", self.fault.kind_name(), self.on))
            }
            _ => Ok(()),
        }
    }
}

/// A fault plan: ordered rules, first match wins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// The rules.
    #[serde(default, rename = "fault")]
    pub rules: Vec<FaultRule>,
}

impl Fault {
    /// A `respond` fault with this status and body, no code, message or Retry-After.
    pub fn respond(status: u16, body: BodyKind) -> Fault {
        Fault::Respond { status, body, code: None, message: None, retry_after_s: None, retry_after_date_s: None }
    }

    /// A `redirect` fault to the other host name whose target carries a
    /// capability valid for 300 s (the defaults of the plan syntax).
    pub fn redirect() -> Fault {
        Fault::Redirect { host: None, capability: true, ttl_s: REDIRECT_TTL_S }
    }

    /// Sets the `code` of a `respond` fault (other kinds are returned unchanged).
    pub fn with_code(mut self, value: &str) -> Fault {
        if let Fault::Respond { code, .. } = &mut self {
            *code = Some(value.to_string());
        }
        self
    }

    /// Sets the `message` of a `respond` fault (other kinds are returned unchanged).
    pub fn with_message(mut self, value: &str) -> Fault {
        if let Fault::Respond { message, .. } = &mut self {
            *message = Some(value.to_string());
        }
        self
    }

    /// Sets `retry_after_s` of a `respond` fault (other kinds are returned unchanged).
    pub fn with_retry_after_s(mut self, seconds: u64) -> Fault {
        if let Fault::Respond { retry_after_s, .. } = &mut self {
            *retry_after_s = Some(seconds);
        }
        self
    }

    /// Sets `retry_after_date_s` of a `respond` fault (other kinds are returned unchanged).
    pub fn with_retry_after_date_s(mut self, seconds: u64) -> Fault {
        if let Fault::Respond { retry_after_date_s, .. } = &mut self {
            *retry_after_date_s = Some(seconds);
        }
        self
    }

    /// The `kind` name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Fault::Respond { .. } => "respond",
            Fault::Delay { .. } => "delay",
            Fault::Truncate { .. } => "truncate",
            Fault::Drip { .. } => "drip",
            Fault::Header { .. } => "header",
            Fault::InProgress { .. } => "in_progress",
            Fault::Vanish => "vanish",
            Fault::ExpireUrls => "expire_urls",
            Fault::Revoke => "revoke",
            Fault::Manifest { .. } => "manifest",
            Fault::CapabilityUrls { .. } => "capability_urls",
            Fault::Content { .. } => "content",
            Fault::Gzip { .. } => "gzip",
            Fault::Range { .. } => "range",
            Fault::Redirect { .. } => "redirect",
            Fault::TokenLifetime { .. } => "token_lifetime",
            Fault::Stall { .. } => "stall",
            Fault::Reset { .. } => "reset",
            Fault::NarrowScope { .. } => "narrow_scope",
            Fault::ClockSkew { .. } => "clock_skew",
            Fault::Unreachable => "unreachable",
            Fault::Rotated => "rotated",
            Fault::RelativeEndpoints => "relative_endpoints",
            Fault::TokenResponse { .. } => "token_response",
        }
    }

    /// Whether the fault makes sense for requests of `target`.
    pub fn applies_to(&self, target: Target) -> bool {
        use Target::*;
        match self {
            Fault::Respond { .. } | Fault::Delay { .. } => true,
            Fault::Unreachable | Fault::Rotated => target == Jwks,
            Fault::RelativeEndpoints => target == Metadata,
            Fault::Reset { .. } => target != Jwks,
            Fault::Header { .. } | Fault::Truncate { .. } | Fault::Drip { .. } | Fault::Stall { .. } => target != Jwks,
            Fault::InProgress { .. } | Fault::Manifest { .. } | Fault::CapabilityUrls { .. } => target == Status,
            Fault::Vanish => matches!(target, Status | File | Delete),
            Fault::ExpireUrls => target == File,
            Fault::Revoke => !matches!(target, Token | Metadata),
            Fault::Content { .. } | Fault::Gzip { .. } | Fault::Range { .. } => target == File,
            Fault::Redirect { .. } => matches!(target, File | Attachment | Status),
            Fault::TokenLifetime { .. }
            | Fault::TokenResponse { .. }
            | Fault::NarrowScope { .. }
            | Fault::ClockSkew { .. } => target == Token,
        }
    }
}
