//! `long-queue`: jobs that wait in a long queue, as busy production servers'
//! do, scaled by a time factor (`long-queue=0.001`) so tests stay fast.

use std::time::Duration;

/// How long a job stays in progress at time factor 1.
pub const LONG_QUEUE_DURATION: Duration = Duration::from_secs(3600);

/// The `Retry-After` of an in-progress job at time factor 1.
pub const LONG_QUEUE_RETRY_AFTER: Duration = Duration::from_secs(120);

impl super::Quirks {
    /// How long a job stays in progress under `long-queue`, at least `base`.
    pub fn job_duration(&self, base: Duration) -> Duration {
        if !self.has(super::Quirk::LongQueue) {
            return base;
        }
        base.max(LONG_QUEUE_DURATION.mul_f64(self.time_factor()))
    }

    /// The `Retry-After` seconds of an in-progress job under `long-queue`
    /// (at least 1), or `None` for the usual estimate.
    pub fn retry_after_s(&self) -> Option<u64> {
        self.has(super::Quirk::LongQueue)
            .then(|| (LONG_QUEUE_RETRY_AFTER.as_secs_f64() * self.time_factor()).ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Quirk, Quirks};
    use super::*;

    #[test]
    fn the_queue_scales_with_the_time_factor() {
        let base = Duration::from_millis(10);
        assert_eq!(Quirks::none().job_duration(base), base);
        assert_eq!(Quirks::none().retry_after_s(), None);
        let hour = Quirks::none().with(Quirk::LongQueue);
        assert_eq!(hour.job_duration(base), LONG_QUEUE_DURATION);
        assert_eq!(hour.retry_after_s(), Some(120));
        let fast = Quirks::parse("long-queue=0.001").unwrap();
        assert_eq!(fast.job_duration(base), Duration::from_millis(3600));
        assert_eq!(fast.retry_after_s(), Some(1));
    }
}
