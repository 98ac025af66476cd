//! The wire invariants: properties every response of the mock has unless a
//! fault (or a quirk) breaks them on purpose. Each fault kind declares here
//! which ones it breaks ([`Fault::breaks`]); the wire-validity observer of the
//! workspace tests (`tests/src/wire/`) checks every other one, on every
//! exchange of every scenario case, from the specification's own terms.
//! `docs/faults.md` lists each kind's declaration.

use serde::{Deserialize, Serialize};

use super::model::{BodyKind, ContentMutation, Fault, GzipMode, ManifestVariant, RangeMode};
use crate::quirks::Quirk;

/// One property of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// The status is one the route answers by the specification: a kick-off
    /// 202 or an error, a status poll 202 or 200 or an error, a file 200 or
    /// 206, a token request 200, 400 or 401 (SRV-110, SRV-123, SRV-133, SRV-184,
    /// AUTH-042).
    Status,
    /// The headers the route requires: `Content-Type` per route,
    /// `Content-Location` on an accepted kick-off, a parseable `Retry-After`,
    /// `Cache-Control: no-store` on tokens, `Content-Range` on a 206.
    Headers,
    /// URLs the specification requires absolute are: `Content-Location`,
    /// manifest `url`s and `link`s, discovery endpoints (SRV-110, SRV-159, AUTH-003).
    AbsoluteUrls,
    /// The complete-status body is a manifest: its members, their JSON types,
    /// no `null` anywhere (SRV-151..SRV-165).
    Manifest,
    /// An error on a FHIR route carries an OperationOutcome (SRV-113, SRV-129, SRV-130, SRV-143).
    Outcome,
    /// A file body is NDJSON: UTF-8, one JSON object with a `resourceType`
    /// per line, each line ended by `\n`, no blank line (SRV-184, SRV-194).
    Ndjson,
    /// `Content-Length` equals the body bytes sent: the body went out whole.
    Length,
    /// A gzip-encoded body decodes to its end (SRV-186).
    Gzip,
    /// A manifest entry's `count` equals the lines of its file (SRV-160).
    Count,
    /// Every line's `resourceType` is the type of its manifest entry (SRV-157, SRV-175).
    LineType,
    /// A file's SHA-256 extension in the manifest matches its bytes.
    Digest,
    /// A token response is what SMART Backend Services and RFC 6749 describe
    /// (`access_token`, `token_type` bearer, `expires_in`, `scope`; errors
    /// with an RFC 6749 `error` code) (AUTH-042, AUTH-050, AUTH-054).
    Token,
    /// The discovery document holds what SMART requires (AUTH-002..AUTH-007).
    Discovery,
}

impl Invariant {
    /// Every invariant, in documentation order.
    pub const ALL: &'static [Invariant] = &[
        Invariant::Status,
        Invariant::Headers,
        Invariant::AbsoluteUrls,
        Invariant::Manifest,
        Invariant::Outcome,
        Invariant::Ndjson,
        Invariant::Length,
        Invariant::Gzip,
        Invariant::Count,
        Invariant::LineType,
        Invariant::Digest,
        Invariant::Token,
        Invariant::Discovery,
    ];

    /// The snake_case name used in docs and observer messages.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::Status => "status",
            Invariant::Headers => "headers",
            Invariant::AbsoluteUrls => "absolute_urls",
            Invariant::Manifest => "manifest",
            Invariant::Outcome => "outcome",
            Invariant::Ndjson => "ndjson",
            Invariant::Length => "length",
            Invariant::Gzip => "gzip",
            Invariant::Count => "count",
            Invariant::LineType => "line_type",
            Invariant::Digest => "digest",
            Invariant::Token => "token",
            Invariant::Discovery => "discovery",
        }
    }
}

/// Marks a response with the invariants a fault or quirk broke on purpose
/// (read by [`crate::capture`]).
#[derive(Debug, Clone, Default)]
pub struct Deliberate(pub Vec<Invariant>);

impl Deliberate {
    /// Adds `broken` to the marks of `response`.
    pub fn mark(response: &mut axum::response::Response, broken: &[Invariant]) {
        if broken.is_empty() {
            return;
        }
        let marks = response.extensions_mut().get_or_insert_default::<Deliberate>();
        marks.0.extend_from_slice(broken);
    }
}

impl Fault {
    /// The invariants this fault breaks on purpose when it acts; every other
    /// one still holds on the response it acts on.
    pub fn breaks(&self) -> &'static [Invariant] {
        use Invariant::*;
        match self {
            Fault::Respond { body, .. } => match body {
                // An OperationOutcome is still one; at the token endpoint it is not an OAuth error.
                BodyKind::Outcome | BodyKind::Transient => &[Status, Token],
                // The error code is the plan's (`temporarily_unavailable` by default, not a §5.2 code).
                BodyKind::Oauth => &[Status, Outcome, Token],
                BodyKind::Html => &[Status, Outcome, Token, Headers],
                BodyKind::Empty => &[Status, Outcome, Token],
            },
            // The body is cut: fewer bytes than announced. What was sent is not judged further.
            Fault::Truncate { .. } | Fault::Reset { .. } => &[Length],
            Fault::Manifest { variant } => match variant {
                ManifestVariant::V4Ballot | ManifestVariant::NotJson | ManifestVariant::OutputMissing => &[Manifest],
                ManifestVariant::WrongCount => &[Count],
                ManifestVariant::Sha256Mismatch => &[Digest],
                ManifestVariant::UnknownFields | ManifestVariant::EmptyOutput | ManifestVariant::PartialSuccess => &[],
            },
            // Any change of the bytes breaks a digest computed over the undamaged file.
            Fault::Content { mutation, .. } => match mutation {
                ContentMutation::MalformedLine
                | ContentMutation::BlankLine
                | ContentMutation::NoTrailingNewline
                | ContentMutation::Bom
                | ContentMutation::InvalidUtf8 => &[Ndjson, Digest],
                ContentMutation::WrongType => &[LineType, Digest],
                ContentMutation::DuplicateLine | ContentMutation::DuplicateAcrossFiles => &[Count, Digest],
                // `\r` before `\n` is JSON whitespace: still NDJSON.
                ContentMutation::Crlf | ContentMutation::HugeLine | ContentMutation::MissingRequired => &[Digest],
            },
            Fault::Gzip { mode } => match mode {
                GzipMode::Corrupt => &[Gzip],
                // gzip bytes read as they come are not NDJSON.
                GzipMode::NoHeader => &[Ndjson],
            },
            Fault::Range { mode } => match mode {
                RangeMode::Ignore => &[],
                RangeMode::Unsatisfiable => &[Status],
            },
            Fault::RelativeEndpoints => &[AbsoluteUrls],
            Fault::TokenResponse { .. } => &[Token],
            Fault::Header { name, .. } => match name.to_ascii_lowercase().as_str() {
                "content-location" | "location" => &[AbsoluteUrls, Headers],
                "content-length" => &[Length],
                "content-encoding" => &[Gzip, Ndjson],
                "content-type" | "retry-after" | "cache-control" | "content-range" => &[Headers],
                _ => &[],
            },
            // Valid answers, only slower, later, narrower or refused for a reason the client must handle.
            Fault::Delay { .. }
            | Fault::InProgress { .. }
            | Fault::Vanish
            | Fault::ExpireUrls
            | Fault::Revoke
            | Fault::CapabilityUrls { .. }
            | Fault::Redirect { .. }
            | Fault::TokenLifetime { .. }
            | Fault::NarrowScope { .. }
            | Fault::ClockSkew { .. }
            | Fault::Unreachable
            | Fault::Rotated
            | Fault::Drip { .. }
            | Fault::Stall { .. } => &[],
        }
    }
}

impl Quirk {
    /// The invariants this quirk breaks on purpose, on every response it shapes.
    pub fn breaks(self) -> &'static [Invariant] {
        match self {
            Quirk::V4BallotManifest => &[Invariant::Manifest],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_invariant_is_listed() {
        let names: std::collections::BTreeSet<&str> = Invariant::ALL.iter().map(|i| i.name()).collect();
        assert_eq!(names.len(), Invariant::ALL.len());
        assert_eq!(serde_json::to_value(Invariant::LineType).unwrap(), "line_type");
    }

    #[test]
    fn a_cut_body_breaks_only_its_length() {
        let fault = Fault::Truncate { after_bytes: Some(10), fraction: None, at_line_end: true };
        assert_eq!(fault.breaks(), &[Invariant::Length]);
        assert!(Fault::Delay { delay_ms: 5 }.breaks().is_empty());
    }
}
