//! The server's outgoing HTTP clients (JWKS URLs, the proxy's upstream).

/// Builds a client trusting the system's CA certificates plus `roots`. Where
/// the system has none (a minimal container image such as Debian slim), it
/// trusts `roots` alone, so plain-http URLs and those roots still work rather
/// than the build failing.
pub(crate) fn with_roots(
    builder: impl Fn() -> reqwest::ClientBuilder,
    roots: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, reqwest::Error> {
    builder().tls_certs_merge(roots.clone()).build().or_else(|e| {
        tracing::warn!("the system's CA certificates could not be loaded ({e}); only the configured CA certificates are trusted for https");
        builder().tls_certs_only(roots).build()
    })
}
