//! Client errors, one variant per kind of failure (no string catch-all).

use bulkmock_wire::OperationOutcome;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an OperationOutcome.
    #[error("{status} from {url}: {}", .outcome.message())]
    Outcome {
        /// HTTP status.
        status: u16,
        /// The request URL.
        url: String,
        /// The parsed body.
        outcome: OperationOutcome,
    },
    /// The token endpoint answered with an OAuth error.
    #[error("token request refused ({status}): {error}: {description}")]
    OAuth {
        /// HTTP status.
        status: u16,
        /// The `error` code.
        error: String,
        /// The `error_description`.
        description: String,
    },
    /// The token was granted without any `system/` scope to export with (CLI-026).
    #[error("the server granted {granted:?} for {requested:?}: no system scope to export with")]
    ScopeNotGranted {
        /// What was asked.
        requested: String,
        /// What was granted.
        granted: String,
    },
    /// The server answered with something that is not what the protocol says (raw body kept).
    #[error("{status} from {url} with an unparseable body ({} bytes)", .body.len())]
    Unparseable {
        /// HTTP status.
        status: u16,
        /// The request URL.
        url: String,
        /// The body as received.
        body: Vec<u8>,
    },
    /// The server broke the protocol (e.g. 202 without Content-Location).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The connection failed.
    #[error("request to {url} failed: {source}")]
    Transport {
        /// The request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// Downloaded data is damaged (a bad line, a count that does not match).
    #[error("{url}: {problem}")]
    Integrity {
        /// The file URL.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// The server's certificate is not trusted or the TLS handshake failed
    /// (CLI-032); retrying cannot help, trusting the server's CA can.
    #[error("TLS to {url} failed: {reason}")]
    Tls {
        /// The request URL.
        url: String,
        /// What the TLS layer said, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
    },
    /// A CA certificate given to trust cannot be used.
    #[error("the CA certificate cannot be used: {0}")]
    CaCert(String),
    /// The client's key cannot sign.
    #[error("the private key cannot be used: {0}")]
    Key(String),
    /// Writing output failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Gave up after retries.
    #[error("gave up on {url} after {attempts} attempts: {last}")]
    Exhausted {
        /// The request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// A failed request: [`ClientError::Tls`] when the TLS layer refused the
    /// server's certificate or the handshake, else [`ClientError::Transport`].
    pub(crate) fn transport(url: &str, source: reqwest::Error) -> ClientError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
        while let Some(e) = cause {
            let text = e.to_string();
            if text.contains("certificate") || text.contains("handshake") || text.contains("HandshakeFailure") {
                return ClientError::Tls { url: url.to_string(), reason: text };
            }
            cause = e.source();
        }
        ClientError::Transport { url: url.to_string(), source }
    }

    /// Reads an error response: an OperationOutcome when the body is one.
    pub(crate) fn from_body(status: u16, url: &str, body: Vec<u8>) -> ClientError {
        match serde_json::from_slice::<OperationOutcome>(&body) {
            Ok(outcome) => ClientError::Outcome { status, url: url.to_string(), outcome },
            Err(_) => ClientError::Unparseable { status, url: url.to_string(), body },
        }
    }

    /// Whether retrying may help (transient codes, throttling, 5xx, resets, cut bodies).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Outcome { status, outcome, .. } => {
                *status == 429 || *status >= 500 && outcome.issue.iter().all(|i| i.code.is_transient())
            }
            ClientError::Unparseable { status, .. } => *status == 429 || *status >= 500,
            ClientError::Transport { .. } => true,
            ClientError::Integrity { .. } => false,
            _ => false,
        }
    }
}
