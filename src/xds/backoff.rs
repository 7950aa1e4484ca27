use std::time::Duration;

/// gRPC's connection backoff: 1 s, growing 1.6 times per failure up to
/// 120 s, each delay jittered by ±20%.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
}

const BASE: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(120);

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BASE }
    }
}

impl Backoff {
    /// The delay before the next attempt.
    pub(super) fn next_delay(&mut self) -> Duration {
        let delay = self.next.mul_f64(0.8 + 0.4 * fastrand::f64());
        self.next = self.next.mul_f64(1.6).min(MAX);
        delay
    }

    /// After a stream that worked, start over.
    pub(super) fn reset(&mut self) {
        self.next = BASE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_1_6_within_20_percent_up_to_120_s() {
        let mut b = Backoff::default();
        let mut nominal = 1.0f64;
        for _ in 0..20 {
            let d = b.next_delay().as_secs_f64();
            assert!(
                d >= nominal * 0.8 - 1e-9 && d <= nominal * 1.2 + 1e-9,
                "{d} vs {nominal}"
            );
            nominal = (nominal * 1.6).min(120.0);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
    }
}
