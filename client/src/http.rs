//! The one place requests go out: bearer tokens only where they belong,
//! redirects followed by hand, one token renewal after a 401.

use reqwest::{Method, StatusCode, header};

use crate::auth::Tokens;
use crate::error::ClientError;

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;

/// A response and where it came from.
pub(crate) struct Sent {
    /// The response.
    pub response: reqwest::Response,
    /// Whether a redirect took the request to another origin (so no token went there).
    pub left_origin: bool,
}

/// The HTTP side of the client.
pub(crate) struct Http {
    /// The connection pool (redirects off: they are followed here).
    pub client: reqwest::Client,
    /// Tokens, when the server needs them.
    pub tokens: Option<Tokens>,
}

/// Scheme, host and port: tokens never cross these (CLI-031).
fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

impl Http {
    /// Sends `method url`, with the bearer token when `auth` and only to `url`'s
    /// origin; follows redirects; on a 401 to a request that carried a token,
    /// tries once more with a new token (CLI-027) and then returns the 401.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        auth: bool,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Sent, ClientError> {
        let origin = url::Url::parse(url).map_err(|e| ClientError::Protocol(format!("bad URL {url:?}: {e}")))?;
        let mut rejected: Option<String> = None;
        'renew: loop {
            let mut current = origin.clone();
            let mut method = method.clone();
            for _ in 0..=MAX_REDIRECTS {
                let mut req = build(self.client.request(method.clone(), current.as_str()));
                let mut sent_token = None;
                if auth
                    && same_origin(&origin, &current)
                    && let Some(tokens) = &self.tokens
                {
                    let token = tokens.get(&self.client, rejected.as_deref()).await?;
                    req = req.bearer_auth(&token);
                    sent_token = Some(token);
                }
                let response = req.send().await.map_err(|source| ClientError::transport(current.as_str(), source))?;
                let status = response.status();
                if status == StatusCode::UNAUTHORIZED
                    && let Some(token) = sent_token
                    && rejected.is_none()
                {
                    rejected = Some(token);
                    continue 'renew;
                }
                if status.is_redirection()
                    && let Some(location) = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok())
                {
                    current = current.join(location).map_err(|e| {
                        ClientError::Protocol(format!("{url} redirected to an unusable Location {location:?}: {e}"))
                    })?;
                    if status == StatusCode::SEE_OTHER {
                        method = Method::GET;
                    }
                    continue;
                }
                return Ok(Sent { left_origin: !same_origin(&origin, &current), response });
            }
            return Err(ClientError::Protocol(format!("{url} redirected more than {MAX_REDIRECTS} times")));
        }
    }

    /// Token requests made so far.
    pub fn token_requests(&self) -> u32 {
        self.tokens.as_ref().map_or(0, |t| t.requests.load(std::sync::atomic::Ordering::Relaxed))
    }
}
