//! How long to wait and how often to try: Retry-After, backoff with jitter, limits.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rand::{RngExt, SeedableRng};
use reqwest::header;

/// Limits of the retry and polling policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Attempts per request before giving up.
    pub max_attempts: u32,
    /// Shortest wait between polls or retries.
    pub min_wait: Duration,
    /// Longest wait (a larger Retry-After is clamped to it).
    pub max_wait: Duration,
    /// Status polls before giving up on a job.
    pub max_polls: u32,
    /// DELETE the job after downloading (CLI-100).
    pub delete_after: bool,
    /// Longest silence while reading a response before the read counts as failed.
    pub read_timeout: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 6,
            min_wait: Duration::from_millis(200),
            max_wait: Duration::from_secs(120),
            max_polls: 100_000,
            delete_after: true,
            read_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Parses `Retry-After` as delay-seconds or an HTTP-date (CLI-062).
pub fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Computes waits: the server's Retry-After when given, else exponential backoff
/// with jitter (CLI-061); always within the policy's bounds.
pub(crate) struct Waits {
    min: Duration,
    max: Duration,
    rng: Mutex<rand::rngs::ChaCha8Rng>,
}

impl Waits {
    /// Waits for `policy`; `seed` makes the jitter repeatable.
    pub fn new(policy: &Policy, seed: u64) -> Self {
        Waits {
            min: policy.min_wait,
            max: policy.max_wait,
            rng: Mutex::new(rand::rngs::ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The wait before try `attempt + 1` (0-based `attempt`).
    pub fn next(&self, retry_after: Option<Duration>, attempt: u32) -> Duration {
        if let Some(wait) = retry_after {
            return wait.clamp(self.min, self.max);
        }
        let ceiling = self.min.saturating_mul(1 << attempt.min(16)).min(self.max);
        // "Equal jitter": half the ceiling plus a random share of the other half.
        let share = self.rng.lock().map_or(0.5, |mut r| r.random::<f64>());
        (ceiling / 2 + ceiling.mul_f64(share / 2.0)).clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_clamps() {
        let mut h = header::HeaderMap::new();
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(header::RETRY_AFTER, date.parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(wait > Duration::from_secs(27) && wait <= Duration::from_secs(30), "{wait:?}");
        h.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);

        let policy =
            Policy { min_wait: Duration::from_secs(1), max_wait: Duration::from_secs(60), ..Policy::default() };
        let waits = Waits::new(&policy, 1);
        assert_eq!(waits.next(Some(Duration::from_secs(3600)), 0), Duration::from_secs(60), "clamped");
        assert_eq!(waits.next(Some(Duration::ZERO), 0), Duration::from_secs(1), "never a hot loop");
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_inside_the_bounds() {
        let policy =
            Policy { min_wait: Duration::from_secs(1), max_wait: Duration::from_secs(60), ..Policy::default() };
        let waits = Waits::new(&policy, 7);
        for attempt in 0..12 {
            let ceiling = Duration::from_secs(1 << attempt).min(Duration::from_secs(60));
            let wait = waits.next(None, attempt);
            assert!(wait >= (ceiling / 2).max(Duration::from_secs(1)) && wait <= ceiling, "{attempt}: {wait:?}");
        }
    }
}
