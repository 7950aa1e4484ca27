//! Connecting to endpoints with jittered exponential backoff.
//!
//! hyper-util's pool opens a connection whenever it has none to reuse; on
//! its own it would retry a refusing endpoint on every request. This
//! connector remembers failures per endpoint address: after one, new
//! connections to that address fail at once until a jittered,
//! exponentially growing delay has passed (100 ms doubling to 10 s, ±50%).
//! Those fast failures are connect errors, so the retry layer may send the
//! request elsewhere and outlier detection counts them as local failures.

use crate::error::BoxError;
use http::Uri;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

const BASE: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(10);

/// A connection attempt skipped because the endpoint refused recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectBackoff {
    /// The endpoint.
    pub authority: String,
    /// How long until the next attempt.
    pub retry_in: Duration,
}

impl fmt::Display for ConnectBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not connecting to {}: it failed recently; next attempt in {:?}",
            self.authority, self.retry_in
        )
    }
}

impl std::error::Error for ConnectBackoff {}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    next: Instant,
}

/// The endpoints that failed recently, by address: shared by a connector
/// and the connections it made, since a TLS 1.3 server refuses the
/// client's certificate only after the connection was handed over.
#[derive(Clone, Debug, Default)]
pub(super) struct Backoff(Arc<Mutex<HashMap<String, Failures>>>);

impl Backoff {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long until `authority` may be tried again, if it must wait.
    pub(super) fn waiting(&self, authority: &str) -> Option<Duration> {
        let now = Instant::now();
        self.failures()
            .get(authority)
            .filter(|f| f.next > now)
            .map(|f| f.next - now)
    }

    /// A connection to `authority` failed: wait longer before the next.
    pub(super) fn failed(&self, authority: &str) {
        let mut failures = self.failures();
        let entry = failures.entry(authority.to_owned()).or_insert(Failures {
            count: 0,
            next: Instant::now(),
        });
        entry.count += 1;
        entry.next = Instant::now() + delay(entry.count);
    }

    /// A connection to `authority` works: forget its failures.
    pub(super) fn succeeded(&self, authority: &str) {
        let mut failures = self.failures();
        if !failures.is_empty() {
            failures.remove(authority);
        }
    }
}

/// A connection the connector made, which may not be known to work yet:
/// one still waiting for the server's verdict on its certificate reports
/// to the [`Backoff`] itself once it hears it.
pub(super) trait Settled {
    /// Whether the connection is known to work.
    fn settled(&self) -> bool;
}

/// Wraps a connector with per-address backoff.
#[derive(Clone, Debug)]
pub(super) struct BackoffConnector<C> {
    inner: C,
    backoff: Backoff,
}

impl<C> BackoffConnector<C> {
    pub(super) fn new(inner: C, backoff: Backoff) -> Self {
        Self { inner, backoff }
    }
}

/// An endpoint's key: its address in canonical form (an IPv4-mapped IPv6
/// address is the IPv4 address), so that every spelling of one address
/// shares its failures; the authority as written when it is no address.
pub(super) fn key(uri: &Uri) -> String {
    let Some(authority) = uri.authority() else {
        return String::new();
    };
    match authority.as_str().parse::<std::net::SocketAddr>() {
        Ok(address) => {
            std::net::SocketAddr::new(address.ip().to_canonical(), address.port()).to_string()
        }
        Err(_) => authority.to_string(),
    }
}

fn delay(count: u32) -> Duration {
    let exp = BASE
        .saturating_mul(1 << count.saturating_sub(1).min(16))
        .min(MAX);
    exp.mul_f64(0.5 + fastrand::f64())
}

type Connecting<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<C> tower::Service<Uri> for BackoffConnector<C>
where
    C: tower::Service<Uri> + Clone + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
    C::Response: Settled + Send,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Connecting<C::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let authority = key(&uri);
        if let Some(retry_in) = self.backoff.waiting(&authority) {
            let error = ConnectBackoff {
                authority,
                retry_in,
            };
            return Box::pin(std::future::ready(Err(error.into())));
        }
        let connecting = self.inner.call(uri);
        let backoff = self.backoff.clone();
        Box::pin(async move {
            let result = connecting.await.map_err(Into::into);
            match &result {
                Ok(connection) if connection.settled() => backoff.succeeded(&authority),
                Ok(_) => {}
                // A refusal of the caller's own (no certificate yet) says
                // nothing of the endpoint.
                Err(error) if error.is::<super::MtlsUnavailable>() => {}
                Err(_) => backoff.failed(&authority),
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tower::ServiceExt;

    impl Settled for () {
        fn settled(&self) -> bool {
            true
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_after_a_failure_and_forgets_on_success() {
        // An injected fault: the inner connector fails while told to.
        let attempts = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(true));
        let (a, f) = (attempts.clone(), failing.clone());
        let inner = tower::service_fn(move |_uri: Uri| {
            a.fetch_add(1, Ordering::SeqCst);
            let fail = f.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                } else {
                    Ok(())
                }
            }
        });
        let connector = BackoffConnector::new(inner, Backoff::default());
        let uri: Uri = "http://10.0.0.1:80".parse().unwrap_or_default();
        assert!(connector.clone().oneshot(uri.clone()).await.is_err());
        let skipped = connector.clone().oneshot(uri.clone()).await.err();
        assert!(skipped.is_some_and(|e| e.is::<ConnectBackoff>()));
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            1,
            "the second attempt was skipped"
        );

        tokio::time::advance(Duration::from_millis(150)).await;
        failing.store(false, Ordering::SeqCst);
        assert!(connector.clone().oneshot(uri.clone()).await.is_ok());
        assert!(
            connector.clone().oneshot(uri).await.is_ok(),
            "success forgets the failures"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn every_spelling_of_an_address_shares_its_failures() {
        let mapped: Uri = "https://[::ffff:10.0.0.1]:443".parse().unwrap_or_default();
        let plain: Uri = "http://10.0.0.1:443".parse().unwrap_or_default();
        assert_eq!(key(&mapped), key(&plain));
        let named: Uri = "http://reviews:80".parse().unwrap_or_default();
        assert_eq!(key(&named), "reviews:80");
    }

    #[test]
    fn delays_grow_with_jitter_and_a_cap() {
        for count in 1..20 {
            let d = delay(count);
            let exp = BASE.saturating_mul(1 << (count - 1).min(16)).min(MAX);
            assert!(d >= exp / 2 && d <= exp.mul_f64(1.5), "{count}: {d:?}");
        }
    }
}
