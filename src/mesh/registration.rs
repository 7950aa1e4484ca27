use crate::config::Locality;
use crate::error::ConfigError;
use crate::tls::admin_client::{AdminCa, AdminHttp, admin_http, admin_https, error_chain};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Registration of the service this process serves with Sinew's control
/// plane, kept alive by heartbeats until [`deregister`](Self::deregister)
/// (or drop) ends it.
///
/// A heartbeat goes every third of the lease's TTL. When the control
/// plane no longer knows the lease (it expired while this process could
/// not reach it, or the control plane lost it), the next heartbeat
/// registers again.
///
/// ```no_run
/// # async fn run() -> Result<(), sinew::mesh::RegistrationError> {
/// use sinew::mesh::Registration;
///
/// let registration = Registration::builder("http://127.0.0.1:18001", "reviews-v1", "10.0.0.5:8080".parse().unwrap())
///     .token("s3cret")
///     .metadata("version", "v1")
///     .start()
///     .await?;
/// // ... serve ...
/// registration.deregister().await?;
/// # Ok(()) }
/// ```
///
/// A control plane serving its admin API over TLS (`--admin-tls`) is
/// reached at an `https://` URL, verified against its CA certificate
/// (the server's chain and the URL's host as a DNS or IP SAN):
///
/// ```no_run
/// # async fn run() -> Result<(), sinew::mesh::RegistrationError> {
/// use sinew::mesh::Registration;
///
/// let registration = Registration::builder("https://cp.example:18001", "reviews-v1", "10.0.0.5:8080".parse().unwrap())
///     .token("s3cret")
///     .admin_ca_file("/etc/sinew/control-plane-ca.pem")
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    heartbeats: Option<tokio::task::JoinHandle<()>>,
}

/// Builds a [`Registration`].
#[derive(Debug)]
pub struct RegistrationBuilder {
    admin_url: String,
    body: serde_json::Value,
    admin_ca: Option<AdminCa>,
    token: Option<String>,
    ttl: Duration,
    heartbeat: Option<Duration>,
}

/// Why registering, renewing or deregistering failed.
///
/// ```
/// use sinew::mesh::{Registration, RegistrationError};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // An https:// URL needs the control plane's CA: refused before connecting.
/// let refused = Registration::builder("https://cp:18001", "reviews", "10.0.0.5:8080".parse().unwrap())
///     .start()
///     .await;
/// assert!(matches!(refused, Err(RegistrationError::Config(e)) if e.field() == "admin_ca_file"));
/// # });
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The builder's settings cannot be used (an `admin_url` that is not
    /// `http://` or `https://`, an `https://` one without a CA, a CA that
    /// cannot be read): the field is named.
    Config(ConfigError),
    /// The control plane could not be reached.
    Unreachable(String),
    /// The control plane refused, with its status and message (a bad
    /// token, a field it rejects).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The control plane's message.
        message: String,
    },
}

impl std::fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => write!(f, "registration: {e}"),
            Self::Unreachable(e) => write!(f, "control plane unreachable: {e}"),
            Self::Refused { status, message } => {
                write!(f, "control plane refused ({status}): {message}")
            }
        }
    }
}

impl std::error::Error for RegistrationError {}

#[derive(Debug)]
struct Shared {
    /// Plain HTTP or TLS, as the admin URL says.
    client: AdminHttp,
    builder: RegistrationBuilder,
    lease: Mutex<String>,
}

impl Registration {
    /// Registers `address` in cluster `name` with the control plane whose
    /// admin API is at `admin_url` (e.g. `http://cp:18001`, or
    /// `https://cp:18001` with
    /// [`admin_ca_file`](RegistrationBuilder::admin_ca_file) or
    /// [`admin_ca_pem`](RegistrationBuilder::admin_ca_pem)).
    pub fn builder(
        admin_url: impl Into<String>,
        name: impl Into<String>,
        address: SocketAddr,
    ) -> RegistrationBuilder {
        RegistrationBuilder {
            admin_url: admin_url.into().trim_end_matches('/').to_owned(),
            body: serde_json::json!({
                "name": name.into(),
                "address": address.to_string(),
                "locality": { "region": "", "zone": "" },
                "metadata": {},
            }),
            admin_ca: None,
            token: None,
            ttl: Duration::from_secs(30),
            heartbeat: None,
        }
    }

    /// The lease held now.
    pub fn lease(&self) -> String {
        self.shared.lease()
    }

    /// Ends the lease: the control plane takes the endpoint out at once.
    pub async fn deregister(mut self) -> Result<(), RegistrationError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A heartbeat under way could otherwise register again after the
        // lease is ended.
        if let Some(heartbeats) = self.heartbeats.take() {
            let _ = heartbeats.await;
        }
        let path = format!("/v1/registrations/{}", self.shared.lease());
        match self.shared.call(Method::DELETE, &path, None).await {
            Ok(_) | Err(RegistrationError::Refused { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Heartbeats stop; without `deregister` the lease runs out.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl RegistrationBuilder {
    /// The bearer token the control plane requires for writes.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The control plane's CA certificate (PEM), to verify an `https://`
    /// admin API by: the file given to the control plane as `--ca-cert`,
    /// or its `GET /v1/trust-bundle` read where it can be trusted. Read
    /// at [`start`](Self::start); a file that cannot be read or holds no
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

    /// The instance's locality.
    pub fn locality(mut self, locality: Locality) -> Self {
        self.body["locality"] =
            serde_json::json!({ "region": locality.region, "zone": locality.zone });
        self
    }

    /// A metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.body["metadata"][key.into()] = serde_json::Value::String(value.into());
        self
    }

    /// The lease's TTL, 1 s to 1 h (whole seconds). Default: 30 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How often heartbeats go. Default: a third of the TTL.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }

    /// Fills in what only the listener knows: port 0 becomes `bound`'s
    /// port, an unspecified IP `bound`'s IP. Refused when both IPs are
    /// unspecified: callers cannot reach `0.0.0.0`.
    #[cfg(feature = "server")]
    pub(crate) fn bound_to(mut self, bound: SocketAddr) -> Result<Self, crate::error::ConfigError> {
        let given: Option<SocketAddr> = self.body["address"].as_str().and_then(|a| a.parse().ok());
        let mut address = given.unwrap_or(bound);
        if address.port() == 0 {
            address.set_port(bound.port());
        }
        if address.ip().is_unspecified() {
            if bound.ip().is_unspecified() {
                return Err(crate::error::ConfigError::new(
                    "registration.address",
                    "the listener binds every address: register the address callers reach",
                ));
            }
            address.set_ip(bound.ip());
        }
        self.body["address"] = serde_json::Value::String(address.to_string());
        Ok(self)
    }

    /// Registers, then keeps the lease alive in a background task.
    pub async fn start(mut self) -> Result<Registration, RegistrationError> {
        self.body["ttl_seconds"] = serde_json::json!(self.ttl.as_secs());
        let https = admin_https(&self.admin_url).map_err(RegistrationError::Config)?;
        let client =
            admin_http(https, self.admin_ca.as_ref()).map_err(RegistrationError::Config)?;
        let shared = Arc::new(Shared {
            client,
            builder: self,
            lease: Mutex::new(String::new()),
        });
        shared.register().await?;
        let (stop, mut stopped) = oneshot::channel();
        let interval = shared
            .builder
            .heartbeat
            .unwrap_or(shared.builder.ttl / 3)
            .clamp(Duration::from_millis(1), crate::bounds::MAX_DURATION);
        let beating = shared.clone();
        let heartbeats = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = ticks.tick() => {}
                }
                if let Err(error) = beating.renew().await {
                    tracing::warn!(%error, "registration heartbeat failed");
                }
            }
        });
        Ok(Registration {
            shared,
            stop: Some(stop),
            heartbeats: Some(heartbeats),
        })
    }
}

impl Shared {
    fn lease(&self) -> String {
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn register(&self) -> Result<(), RegistrationError> {
        let body = serde_json::to_vec(&self.builder.body).unwrap_or_default();
        let answer = self
            .call(Method::POST, "/v1/registrations", Some(body))
            .await?;
        let lease = answer["lease"].as_str().unwrap_or_default().to_owned();
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = lease;
        Ok(())
    }

    /// A heartbeat; registers again when the lease is gone.
    async fn renew(&self) -> Result<(), RegistrationError> {
        let path = format!("/v1/registrations/{}", self.lease());
        match self.call(Method::PUT, &path, None).await {
            Err(RegistrationError::Refused { status: 404, .. }) => {
                tracing::info!("the control plane lost the lease: registering again");
                self.register().await
            }
            other => other.map(drop),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<serde_json::Value, RegistrationError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.builder.admin_url))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.builder.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| RegistrationError::Unreachable(e.to_string()))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| RegistrationError::Unreachable("no answer within 10 s".to_owned()))?
            .map_err(|e| RegistrationError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| RegistrationError::Unreachable(e.to_string()))?
            .to_bytes();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if status.is_success() {
            return Ok(answer);
        }
        let message = answer["error"].as_str().map_or_else(
            || String::from_utf8_lossy(&bytes).into_owned(),
            str::to_owned,
        );
        Err(RegistrationError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}
