//! Certificates from the control plane's CA: the workload makes its key,
//! sends a CSR, installs what comes back, and renews on its own.
//!
//! [`Issuer::start`] makes an ECDSA P-256 key in process, has the control
//! plane sign a CSR for it (`POST /v1/certificates`, with the admin token
//! or a bootstrap token the control plane issued), and installs the
//! chain, the key and the trust bundle in an [`Identity`]. It returns once
//! that first certificate is installed, or with an [`IssueError`] naming
//! why there is none (unreachable, token refused, SPIFFE ID refused, an
//! answer that does not hold together). Only the CSR travels: the private
//! key never leaves the process, and a new one is made for each leaf.
//!
//! Then a task renews the leaf at the answer's `refresh_at` (about half
//! its lifetime), with a new key each time. A rotation applies to new
//! connections only: connections already made keep the leaf they were
//! made with. A renewal that fails is retried with jittered backoff,
//! always before the current leaf expires, and the last good material
//! stays in place meanwhile. The task also re-reads the trust bundle
//! (`GET /v1/trust-bundle`) every [`IssuerConfig::bundle_refresh`] and
//! installs it when it changed: during a CA rotation the new root is
//! trusted as soon as the control plane announces it, before it signs
//! anything. The task stops when the [`Issuer`] is dropped.
//!
//! An `https://` admin URL (a control plane started with `--admin-tls`)
//! is reached over TLS, the server verified against the CA certificate
//! given with [`IssuerConfig::admin_ca_file`] or
//! [`IssuerConfig::admin_ca_pem`] (the control plane's root: the issuer
//! has no trust bundle yet when it first asks) and the URL's host. That
//! anchor stays in use for every later request. An `http://` URL is
//! plain HTTP: only on a network the workloads trust. The token is sent
//! only in the `Authorization` header of certificate requests, marked
//! sensitive, and never logged; neither is the key.
//!
//! ```no_run
//! use sinew::tls::{Identity, Issuer, IssuerConfig};
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let token = std::env::var("SINEW_BOOTSTRAP_TOKEN")?;
//! let config = IssuerConfig::new("https://control-plane:18001", token)?
//!     .admin_ca_file("/etc/sinew/control-plane-ca.pem");
//! let identity = Identity::new();
//! let issuer = Issuer::start(config, identity.clone()).await?;
//! assert!(identity.is_ready());
//! // ... serve and call with `identity`; renewals stop with `issuer`.
//! # drop(issuer);
//! # Ok(()) }
//! ```

use super::admin_client::{AdminCa, admin_base, admin_http};
use super::ca_api::CaApi;
use super::identity::{Identity, IdentityError};
use super::spiffe_id::SpiffeId;
use crate::error::ConfigError;
use http::HeaderValue;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How to reach the control plane's CA, and how often to look again.
///
/// ```
/// use sinew::tls::IssuerConfig;
/// use std::time::Duration;
///
/// let config = IssuerConfig::new("http://127.0.0.1:8081", "a.secret")
///     .unwrap()
///     .bundle_refresh(Duration::from_secs(30));
/// assert!(!format!("{config:?}").contains("a.secret"), "the token is never shown");
///
/// let err = IssuerConfig::new("ftp://cp:8081", "t").unwrap_err();
/// assert_eq!(err.field(), "admin_url");
///
/// // Over TLS, with the control plane's CA certificate as the anchor.
/// let ca = std::fs::read("ca/ca.pem").unwrap_or_default();
/// let config = IssuerConfig::new("https://cp.example:18001", "a.secret")
///     .unwrap()
///     .admin_ca_pem(ca);
/// ```
#[derive(Clone)]
pub struct IssuerConfig {
    /// `http://host:port` or `https://host:port`.
    base: String,
    https: bool,
    admin_ca: Option<AdminCa>,
    authorization: HeaderValue,
    spiffe_id: Option<SpiffeId>,
    bundle_refresh: Duration,
    request_timeout: Duration,
}

/// How often the trust bundle is re-read unless set.
const DEFAULT_BUNDLE_REFRESH: Duration = Duration::from_secs(60);
/// How long one request to the control plane may take unless set.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl IssuerConfig {
    /// The control plane's admin API at `admin_url` (`http://host:port`,
    /// or `https://host:port` with [`admin_ca_file`](Self::admin_ca_file)
    /// or [`admin_ca_pem`](Self::admin_ca_pem)),
    /// and the token that vouches for this workload: a bootstrap token
    /// (the control plane then says which SPIFFE ID it gets) or the admin
    /// token (then name the SPIFFE ID with [`spiffe_id`](Self::spiffe_id)).
    /// Refused, naming `admin_url` or `token`, when they cannot be used.
    pub fn new(admin_url: &str, token: impl Into<String>) -> Result<Self, ConfigError> {
        let (base, https) = admin_base(admin_url)?;
        let token = token.into();
        if token.is_empty() {
            return Err(ConfigError::new("token", "is empty"));
        }
        // The error would echo the token: say only what is wrong.
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ConfigError::new("token", "holds characters a header cannot carry"))?;
        authorization.set_sensitive(true);
        Ok(Self {
            base,
            https,
            admin_ca: None,
            authorization,
            spiffe_id: None,
            bundle_refresh: DEFAULT_BUNDLE_REFRESH,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// The SPIFFE ID to ask for. Required with the admin token; with a
    /// bootstrap token it must be the token's (or the control plane
    /// refuses, `403`), and may be left out.
    pub fn spiffe_id(mut self, id: SpiffeId) -> Self {
        self.spiffe_id = Some(id);
        self
    }

    /// How often the trust bundle is re-read between renewals, so that a
    /// CA rotating in is trusted before it signs. Default: 60 s.
    pub fn bundle_refresh(mut self, every: Duration) -> Self {
        self.bundle_refresh = every;
        self
    }

    /// The control plane's CA certificate (PEM), to verify an `https://`
    /// admin API by: the file given to the control plane as `--ca-cert`,
    /// or its `GET /v1/trust-bundle` read where it can be trusted (on
    /// the control plane's host, over loopback). Read
    /// when the issuer starts; a file that cannot be read or holds no
    /// certificate is refused, naming `admin_ca_file`.
    pub fn admin_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.admin_ca = Some(AdminCa::File(path.into()));
        self
    }

    /// The control plane's CA certificate (PEM) itself, as
    /// [`admin_ca_file`](Self::admin_ca_file) would read it.
    pub fn admin_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.admin_ca = Some(AdminCa::Pem(pem.into()));
        self
    }

    /// How long one request to the control plane may take. Default: 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        crate::error::check::positive_duration("bundle_refresh", self.bundle_refresh)?;
        crate::error::check::bounded_duration("bundle_refresh", self.bundle_refresh)?;
        crate::error::check::positive_duration("request_timeout", self.request_timeout)?;
        crate::error::check::bounded_duration("request_timeout", self.request_timeout)
    }
}

impl fmt::Debug for IssuerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.debug_struct("IssuerConfig")
            .field("admin_url", &self.base)
            .field(
                "admin_ca",
                &self.admin_ca.as_ref().map(|ca| match ca {
                    AdminCa::File(path) => format!("{path:?}"),
                    AdminCa::Pem(_) => "(PEM)".to_owned(),
                }),
            )
            .field("spiffe_id", &self.spiffe_id)
            .field("bundle_refresh", &self.bundle_refresh)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Why the control plane's CA gave no certificate.
///
/// ```
/// use sinew::tls::IssueError;
///
/// let err = IssueError::TokenRefused { message: "unknown token".into() };
/// assert_eq!(
///     err.to_string(),
///     "the control plane refused the token (401): unknown token"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueError {
    /// A setting is out of range.
    Config(ConfigError),
    /// The key or the CSR could not be made.
    Key(String),
    /// The control plane could not be reached, or did not answer in time.
    Unreachable {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The token was refused (`401`): unknown, expired or revoked.
    TokenRefused {
        /// The control plane's reason.
        message: String,
    },
    /// The SPIFFE ID asked for is not this token's to have (`403`).
    Forbidden {
        /// The control plane's reason.
        message: String,
    },
    /// Any other refusal (`400` for a CSR it will not sign, `503` when
    /// it cannot sign now...).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The control plane's reason.
        message: String,
    },
    /// The answer is not what the API promises.
    BadAnswer {
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate and bundle received do not make usable material.
    Install(IdentityError),
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => fmt::Display::fmt(e, f),
            Self::Key(reason) => write!(f, "private key: {reason}"),
            Self::Unreachable { url, reason } => {
                write!(f, "the control plane is unreachable at {url}: {reason}")
            }
            Self::TokenRefused { message } => {
                write!(f, "the control plane refused the token (401): {message}")
            }
            Self::Forbidden { message } => write!(
                f,
                "the control plane refused the SPIFFE ID asked for (403): {message}"
            ),
            Self::Refused { status, message } => write!(
                f,
                "the control plane refused the certificate request ({status}): {message}"
            ),
            Self::BadAnswer { reason } => {
                write!(f, "the control plane's answer is unusable: {reason}")
            }
            Self::Install(e) => write!(f, "the certificate received is unusable: {e}"),
        }
    }
}

impl std::error::Error for IssueError {}

/// Keeps a workload's certificate from the control plane's CA current.
/// Made by [`Issuer::start`]; renewals stop when it is dropped (the
/// material installed stays in the [`Identity`]).
#[derive(Debug)]
pub struct Issuer {
    task: JoinHandle<()>,
}

impl Issuer {
    /// Gets the first certificate and installs it in `identity` (or
    /// returns why not: nothing is started then), then keeps it renewed
    /// and the trust bundle current on a tokio task.
    pub async fn start(config: IssuerConfig, identity: Identity) -> Result<Self, IssueError> {
        config.check().map_err(IssueError::Config)?;
        let http =
            admin_http(config.https, config.admin_ca.as_ref()).map_err(IssueError::Config)?;
        let api = CaApi::new(
            http,
            config.base.clone(),
            config.authorization.clone(),
            config.request_timeout,
        );
        let issued = api.sign(config.spiffe_id.as_ref()).await?;
        let next = renewal_delay(issued.refresh_at, issued.credentials.expires_at());
        tracing::info!(
            spiffe_id = %issued.credentials.spiffe_id(),
            renew_in = ?next,
            "certificate from the control plane installed"
        );
        identity.set_credentials(issued.credentials);
        let task = tokio::spawn(keep_current(api, config, identity, Instant::now() + next));
        Ok(Self { task })
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renews at each `refresh_at` and re-reads the bundle meanwhile.
async fn keep_current(api: CaApi, config: IssuerConfig, identity: Identity, mut renew_at: Instant) {
    let mut bundle_check = tokio::time::interval_at(
        Instant::now() + config.bundle_refresh,
        config.bundle_refresh,
    );
    bundle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(renew_at) => {
                match api.sign(config.spiffe_id.as_ref()).await {
                    Ok(issued) => {
                        failures = 0;
                        let next = renewal_delay(issued.refresh_at, issued.credentials.expires_at());
                        tracing::debug!(renew_in = ?next, "certificate renewed");
                        identity.set_credentials(issued.credentials);
                        renew_at = Instant::now() + next;
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        let retry = retry_delay(failures, identity.expires_at());
                        tracing::warn!(%error, retry_in = ?retry, "certificate renewal failed; keeping the current certificate");
                        renew_at = Instant::now() + retry;
                    }
                }
            }
            _ = bundle_check.tick() => {
                // The leaf no longer chains to the roots announced: a new
                // one, from the root that signs now (unless renewals are
                // failing already: their backoff stands).
                if refresh_bundle(&api, &identity).await && failures == 0 {
                    renew_at = Instant::now();
                }
            }
        }
    }
}

/// Installs the control plane's bundle when it differs from the one in
/// use. True when the current leaf does not verify against it.
async fn refresh_bundle(api: &CaApi, identity: &Identity) -> bool {
    let Ok(current) = identity.credentials() else {
        return false;
    };
    let trust_domain = current.spiffe_id().trust_domain();
    let bundle = match api.bundle(trust_domain).await {
        Ok(bundle) => bundle,
        Err(error) => {
            tracing::warn!(%error, "trust bundle refresh failed; keeping the current bundle");
            return false;
        }
    };
    if bundle.roots(trust_domain) == current.bundle().roots(trust_domain) {
        return false;
    }
    match identity.set_bundle(bundle) {
        Ok(()) => {
            tracing::info!(%trust_domain, "trust bundle changed; installed");
            false
        }
        Err(error) => {
            tracing::warn!(%error, "the new trust bundle does not vouch for the current certificate; renewing");
            true
        }
    }
}

/// Renewals come no sooner than this after the last one, whatever the
/// control plane's clock says.
const MIN_RENEWAL: Duration = Duration::from_secs(1);

/// Until `refresh_at`, a little earlier at random (so that workloads
/// started together spread their renewals). Times are read on this
/// host's clock, which is the one its peers judge the leaf by (near
/// enough): when the control plane's clock is off so that `refresh_at`
/// has passed already, or comes only after the leaf expires, halfway to
/// the expiry instead, rather than at once, again and again.
fn renewal_delay(refresh_at: SystemTime, expires_at: SystemTime) -> Duration {
    let now = SystemTime::now();
    let until = |t: SystemTime| t.duration_since(now).unwrap_or(Duration::ZERO);
    let remaining = until(expires_at);
    let mut delay = until(refresh_at);
    if delay.is_zero() || delay >= remaining {
        delay = remaining / 2;
    }
    // Up to 10 % earlier.
    let early = delay.mul_f64(fastrand::f64() * 0.1);
    (delay - early).max(MIN_RENEWAL)
}

/// First retry after a failed renewal; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two tries.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// The shortest wait between two tries.
const MIN_RETRY: Duration = Duration::from_millis(200);

/// Jittered exponential backoff, cut to half the time the current leaf
/// has left, so that tries keep coming before it expires.
fn retry_delay(failures: u32, expires_at: Option<SystemTime>) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let ceiling = FIRST_RETRY.saturating_mul(1 << exponent).min(MAX_RETRY);
    // Between half the ceiling and the ceiling.
    let mut delay = ceiling.mul_f64(0.5 + fastrand::f64() * 0.5);
    if let Some(left) = expires_at.and_then(|t| t.duration_since(SystemTime::now()).ok()) {
        delay = delay.min(left / 2);
    }
    delay.max(MIN_RETRY)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn renewal_comes_at_refresh_at_or_a_little_before() {
        let now = SystemTime::now();
        for _ in 0..100 {
            let delay = renewal_delay(
                now + Duration::from_secs(1800),
                now + Duration::from_secs(3600),
            );
            assert!(delay <= Duration::from_secs(1800), "{delay:?}");
            assert!(delay >= Duration::from_secs(1619), "{delay:?}");
        }
        // A refresh_at past the expiry: halfway to it instead.
        let delay = renewal_delay(
            now + Duration::from_secs(7200),
            now + Duration::from_secs(100),
        );
        assert!(delay <= Duration::from_secs(50), "{delay:?}");
        // A refresh_at in the past (the CA's clock lags): halfway to the
        // expiry, not at once.
        let delay = renewal_delay(
            now - Duration::from_secs(10),
            now + Duration::from_secs(100),
        );
        assert!(delay > Duration::from_secs(40), "{delay:?}");
        assert!(delay <= Duration::from_secs(50), "{delay:?}");
        // Nothing left at all: still not a busy loop.
        let delay = renewal_delay(now - Duration::from_secs(10), now - Duration::from_secs(5));
        assert_eq!(delay, MIN_RENEWAL);
    }

    #[test]
    fn retries_back_off_with_jitter_and_stay_before_the_expiry() {
        for failures in 1..40 {
            let delay = retry_delay(failures, None);
            assert!(
                delay <= MAX_RETRY && delay >= MIN_RETRY,
                "{failures}: {delay:?}"
            );
        }
        assert!(retry_delay(1, None) <= FIRST_RETRY);
        assert!(retry_delay(10, None) >= MAX_RETRY / 2);
        // Ten seconds left: never a wait past five.
        let expires = SystemTime::now() + Duration::from_secs(10);
        for failures in 1..40 {
            assert!(retry_delay(failures, Some(expires)) <= Duration::from_secs(5));
        }
        // Jittered: not always the same wait.
        let waits: std::collections::HashSet<_> = (0..20).map(|_| retry_delay(8, None)).collect();
        assert!(waits.len() > 1);
    }

    #[test]
    fn settings_out_of_range_are_refused_naming_them() {
        let config = IssuerConfig::new("http://127.0.0.1:1", "t").unwrap();
        let err = config
            .clone()
            .bundle_refresh(Duration::ZERO)
            .check()
            .unwrap_err();
        assert_eq!(err.field(), "bundle_refresh");
        let err = config.request_timeout(Duration::ZERO).check().unwrap_err();
        assert_eq!(err.field(), "request_timeout");
        for (url, why) in [
            ("cp:8081", "http://host:port"),
            ("http://cp:8081/v1", "without a path"),
            ("ftp://cp", "http://host:port"),
            ("not a url", "http://host:port"),
        ] {
            let err = IssuerConfig::new(url, "t").unwrap_err();
            assert_eq!(err.field(), "admin_url", "{url}");
            assert!(err.message().contains(why), "{url}: {err}");
        }
        let err = IssuerConfig::new("http://cp", "").unwrap_err();
        assert_eq!(err.field(), "token");
        let err = IssuerConfig::new("http://cp", "se\ncret").unwrap_err();
        assert_eq!(err.field(), "token");
        assert!(!err.to_string().contains("se\ncret"));
    }

    #[tokio::test]
    async fn an_unreachable_control_plane_is_named_at_start() {
        // A port nothing listens on: bound, then released.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let config = IssuerConfig::new(&format!("http://{addr}"), "t").unwrap();
        let identity = Identity::new();
        let err = Issuer::start(config, identity.clone()).await.unwrap_err();
        assert!(matches!(err, IssueError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        assert!(!identity.is_ready());
    }

    /// A server on loopback that answers every connection with `answer`
    /// (or holds it open, silent, when `None`).
    async fn raw_server(answer: Option<Vec<u8>>) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = stream.read(&mut buf).await;
                    match answer {
                        Some(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                        }
                        // Hold the connection until the client gives up.
                        None => while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {},
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_silent_control_plane_times_out_naming_the_wait() {
        let addr = raw_server(None).await;
        let config = IssuerConfig::new(&format!("http://{addr}"), "t")
            .unwrap()
            .request_timeout(Duration::from_millis(200));
        let err = Issuer::start(config, Identity::new()).await.unwrap_err();
        assert!(matches!(err, IssueError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("no answer within 200ms"), "{err}");
    }

    #[tokio::test]
    async fn an_answer_too_large_or_not_json_is_refused_naming_it() {
        let mut huge = b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n".to_vec();
        huge.resize(huge.len() + 2_000_000, b'x');
        let addr = raw_server(Some(huge)).await;
        let config = IssuerConfig::new(&format!("http://{addr}"), "t").unwrap();
        let err = Issuer::start(config, Identity::new()).await.unwrap_err();
        assert!(matches!(err, IssueError::BadAnswer { .. }), "{err}");
        assert!(err.to_string().contains("the body"), "{err}");
        assert!(err.to_string().contains("limit"), "{err}");

        let addr = raw_server(Some(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec(),
        ))
        .await;
        let config = IssuerConfig::new(&format!("http://{addr}"), "t").unwrap();
        let err = Issuer::start(config, Identity::new()).await.unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");

        let addr = raw_server(Some(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec(),
        ))
        .await;
        let config = IssuerConfig::new(&format!("http://{addr}"), "t").unwrap();
        let err = Issuer::start(config, Identity::new()).await.unwrap_err();
        assert!(err.to_string().contains("`spiffe_id` is missing"), "{err}");

        let addr = raw_server(Some(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 19\r\n\r\n{\"error\":\"no root\"}".to_vec(),
        ))
        .await;
        let config = IssuerConfig::new(&format!("http://{addr}"), "t").unwrap();
        let err = Issuer::start(config, Identity::new()).await.unwrap_err();
        assert_eq!(
            err,
            IssueError::Refused {
                status: 503,
                message: "no root".to_owned()
            }
        );
    }
}
