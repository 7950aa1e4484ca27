//! One clock reading shared by the layers of a stack.
//!
//! Reading the clock is the largest single cost of several layers (the
//! timeout's deadline, the breaker's window, the budget's and the rate
//! limit's buckets). Inside a cached region ([`enter`]) (entered by every deadline
//! scope, so by every timeout layer, for each `call` and each poll), the
//! first reading is kept and reused: layers called in one synchronous
//! chain are nanoseconds apart, so they may as well agree on the time.
//! Outside a region, [`now`] reads the clock. All readings come from
//! `tokio::time`, so paused time in tests still works.

use std::cell::Cell;
use tokio::time::Instant;

thread_local! {
    /// `None`: no region. `Some(None)`: in a region, not read yet.
    static CACHE: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// The current instant, read once per cached region.
#[inline]
#[cfg_attr(
    not(any(
        feature = "timeout",
        feature = "retry",
        feature = "breaker",
        feature = "limit"
    )),
    allow(dead_code)
)]
pub(crate) fn now() -> Instant {
    CACHE.with(|cache| match cache.get() {
        Some(Some(now)) => now,
        Some(None) => {
            let now = Instant::now();
            cache.set(Some(Some(now)));
            now
        }
        None => Instant::now(),
    })
}

/// Whole milliseconds from `base` to [`now`]. Not `as_millis()`: its u128
/// division costs more than the rest of a layer's hot path.
#[inline]
#[cfg_attr(not(any(feature = "retry", feature = "breaker")), allow(dead_code))]
pub(crate) fn millis_since(base: Instant) -> u64 {
    let elapsed = now().saturating_duration_since(base);
    elapsed.as_secs() * 1000 + u64::from(elapsed.subsec_millis())
}

/// A cached region, left when dropped (even on panic).
#[must_use]
pub(crate) struct Region {
    outermost: bool,
}

/// Enters a cached region; a nested region shares the outer one.
#[inline]
pub(crate) fn enter() -> Region {
    let outermost = CACHE.with(|cache| {
        let outermost = cache.get().is_none();
        if outermost {
            cache.set(Some(None));
        }
        outermost
    });
    Region { outermost }
}

impl Drop for Region {
    #[inline]
    fn drop(&mut self) {
        if self.outermost {
            CACHE.with(|cache| cache.set(None));
        }
    }
}

/// Runs `f` in a cached region.
#[cfg(test)]
pub(crate) fn cached<R>(f: impl FnOnce() -> R) -> R {
    let _region = enter();
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn one_reading_per_region() {
        let outside = now();
        tokio::time::advance(Duration::from_millis(5)).await;
        let (a, b, c) = cached(|| {
            let a = now();
            std::thread::sleep(Duration::from_millis(1));
            let b = cached(now);
            (a, b, now())
        });
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a - outside, Duration::from_millis(5));
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(
            now() - a,
            Duration::from_millis(5),
            "no stale reading outside"
        );
    }
}
