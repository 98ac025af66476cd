//! The hook for live checks: the server crate knows nothing of the harness
//! (the harness depends on the server, not the other way round), so the
//! binary installs an implementation of [`LiveChecks`] that runs the harness's
//! wire checks, and the dashboard shows what it returns.

use serde::Serialize;

use crate::transcript::Exchange;

/// One check's verdict on one client's live transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveCheck {
    /// The check's id (`auth.fresh_jti`).
    pub id: String,
    /// What it asks of a client, in one line.
    pub title: String,
    /// `MUST`, `SHOULD` or `MAY`.
    pub level: String,
    /// `pass`, `fail`, `warn`, `info` or `skip`.
    pub verdict: String,
    /// Why it did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The sequence numbers of the exchanges named as evidence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<u64>,
}

/// Checks one client's exchanges so far, with no scenario: what the page's
/// "live checks" panel shows per client.
pub trait LiveChecks: Send + Sync + 'static {
    /// The verdicts for `client_id` (`None`: requests without a client, when
    /// authorization is off), given its exchanges in order of arrival;
    /// `auth`: whether the server requires authorization.
    fn check(&self, client_id: Option<&str>, exchanges: &[Exchange], auth: bool) -> Vec<LiveCheck>;
}
