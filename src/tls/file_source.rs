//! Certificate material from files written by an external issuer (SPIRE's
//! helper, cert-manager, Vault agent), in the shape of gRPC's
//! `file_watcher` certificate provider (gRFC A29), so that one bootstrap
//! file serves Sinew and grpcio.

use super::identity::{Credentials, Identity, IdentityError};
use crate::error::ConfigError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The `file_watcher` plugin's settings: three PEM files and how often
/// to re-read them.
///
/// ```
/// use sinew::tls::FileWatcherConfig;
/// use std::time::Duration;
///
/// let config = FileWatcherConfig::new("/certs/cert.pem", "/certs/key.pem", "/certs/ca.pem");
/// assert_eq!(config.refresh_interval, Duration::from_secs(600));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWatcherConfig {
    /// The certificate chain, leaf first (PEM).
    pub certificate_file: PathBuf,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub private_key_file: PathBuf,
    /// The roots of the leaf's trust domain (PEM; several during a CA
    /// rotation).
    pub ca_certificate_file: PathBuf,
    /// How often the files are re-read: 600 s unless set, as in gRPC.
    pub refresh_interval: Duration,
}

/// gRPC's default `refresh_interval`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(600);

impl FileWatcherConfig {
    /// Settings for three files, re-read every 600 s.
    pub fn new(
        certificate_file: impl Into<PathBuf>,
        private_key_file: impl Into<PathBuf>,
        ca_certificate_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            certificate_file: certificate_file.into(),
            private_key_file: private_key_file.into(),
            ca_certificate_file: ca_certificate_file.into(),
            refresh_interval: DEFAULT_REFRESH,
        }
    }

    /// Reads the plugin's `config` object: `certificate_file`,
    /// `private_key_file`, `ca_certificate_file` (all three required, as
    /// mutual TLS needs them) and `refresh_interval` (a protobuf JSON
    /// duration such as `"600s"`). Error fields are relative to `config`.
    ///
    /// ```
    /// use sinew::tls::FileWatcherConfig;
    ///
    /// let json = serde_json::json!({
    ///     "certificate_file": "cert.pem",
    ///     "private_key_file": "key.pem",
    ///     "ca_certificate_file": "ca.pem",
    ///     "refresh_interval": "30s",
    /// });
    /// let config = FileWatcherConfig::from_json(&json).unwrap();
    /// assert_eq!(config.refresh_interval.as_secs(), 30);
    ///
    /// let err = FileWatcherConfig::from_json(&serde_json::json!({})).unwrap_err();
    /// assert_eq!(err.field(), "certificate_file");
    /// ```
    pub fn from_json(config: &Value) -> Result<Self, ConfigError> {
        let object = config
            .as_object()
            .ok_or_else(|| ConfigError::new("config", "must be an object"))?;
        let path = |field: &str| -> Result<PathBuf, ConfigError> {
            match object.get(field) {
                Some(Value::String(p)) if !p.is_empty() => Ok(PathBuf::from(p)),
                Some(_) => Err(ConfigError::new(field, "must be a non-empty string")),
                None => Err(ConfigError::new(
                    field,
                    "is required: mutual TLS needs a certificate, its key and the CA certificates",
                )),
            }
        };
        let mut settings = Self::new(
            path("certificate_file")?,
            path("private_key_file")?,
            path("ca_certificate_file")?,
        );
        if let Some(interval) = object.get("refresh_interval") {
            settings.refresh_interval = interval
                .as_str()
                .and_then(parse_duration)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ConfigError::new(
                        "refresh_interval",
                        "must be a positive duration in seconds such as \"600s\"",
                    )
                })?;
        }
        Ok(settings)
    }

    /// Reads and validates the three files now.
    ///
    /// ```
    /// use sinew::tls::{FileWatcherConfig, IdentityError};
    ///
    /// let config = FileWatcherConfig::new("/nonexistent/cert.pem", "k", "c");
    /// match config.load().unwrap_err() {
    ///     IdentityError::File { field, .. } => assert_eq!(field, "certificate_file"),
    ///     other => panic!("{other}"),
    /// }
    /// ```
    pub fn load(&self) -> Result<Credentials, IdentityError> {
        self.read()?.credentials(self)
    }

    /// `error` (about the files' contents) naming the file it is about.
    fn locate(&self, error: IdentityError) -> IdentityError {
        let (field, path) = match &error {
            IdentityError::Pem {
                what: "private key",
                ..
            }
            | IdentityError::Key(_)
            | IdentityError::KeyMismatch => ("private_key_file", &self.private_key_file),
            IdentityError::Pem {
                what: "CA certificate",
                ..
            }
            | IdentityError::Bundle(_)
            | IdentityError::UnknownTrustDomain(_)
            | IdentityError::UntrustedChain(_) => {
                ("ca_certificate_file", &self.ca_certificate_file)
            }
            IdentityError::Pem { .. } | IdentityError::EmptyChain | IdentityError::Svid(_) => {
                ("certificate_file", &self.certificate_file)
            }
            _ => return error,
        };
        IdentityError::File {
            field,
            path: path.clone(),
            reason: error.to_string(),
        }
    }

    fn read(&self) -> Result<Files, IdentityError> {
        Ok(Files {
            certificate: read("certificate_file", &self.certificate_file)?,
            private_key: read("private_key_file", &self.private_key_file)?,
            ca_certificate: read("ca_certificate_file", &self.ca_certificate_file)?,
        })
    }
}

/// The three files' contents, as last read.
#[derive(PartialEq, Eq)]
struct Files {
    certificate: Vec<u8>,
    private_key: Vec<u8>,
    ca_certificate: Vec<u8>,
}

impl Files {
    fn credentials(&self, config: &FileWatcherConfig) -> Result<Credentials, IdentityError> {
        Credentials::from_pem(&self.certificate, &self.private_key, &self.ca_certificate)
            .map_err(|e| config.locate(e))
    }
}

// Plain std reads: the files are a few kilobytes, cheaper than a trip to
// the blocking pool, and deterministic under a paused clock in tests.
fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|e| IdentityError::File {
        field,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A protobuf JSON duration: decimal seconds with an `s` suffix.
fn parse_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// Reads the `certificate_providers` map of a gRPC xDS bootstrap file
/// (gRFC A29): `{"name": {"plugin_name": "file_watcher", "config": {...}}}`,
/// by instance name. Other bootstrap fields are ignored; a missing map is
/// an empty one. Only the `file_watcher` plugin is known: another is an
/// error naming it.
///
/// ```
/// use sinew::tls::certificate_providers;
///
/// let bootstrap = r#"{
///   "xds_servers": [],
///   "certificate_providers": {
///     "mesh": {"plugin_name": "file_watcher", "config": {
///       "certificate_file": "/certs/cert.pem",
///       "private_key_file": "/certs/key.pem",
///       "ca_certificate_file": "/certs/ca.pem",
///       "refresh_interval": "60s"}}
///   }
/// }"#;
/// let providers = certificate_providers(bootstrap).unwrap();
/// assert_eq!(providers["mesh"].refresh_interval.as_secs(), 60);
///
/// let err = certificate_providers(
///     r#"{"certificate_providers": {"x": {"plugin_name": "meshca"}}}"#,
/// ).unwrap_err();
/// assert_eq!(err.field(), "certificate_providers.x.plugin_name");
/// assert!(err.message().contains("meshca"));
/// ```
pub fn certificate_providers(
    bootstrap: &str,
) -> Result<BTreeMap<String, FileWatcherConfig>, ConfigError> {
    let root: Value = serde_json::from_str(bootstrap)
        .map_err(|e| ConfigError::new("bootstrap", format!("not valid JSON: {e}")))?;
    let Some(providers) = root.get("certificate_providers") else {
        return Ok(BTreeMap::new());
    };
    let providers = providers
        .as_object()
        .ok_or_else(|| ConfigError::new("certificate_providers", "must be an object"))?;
    let mut settings = BTreeMap::new();
    for (name, provider) in providers {
        let at = format!("certificate_providers.{name}");
        let plugin = provider
            .get("plugin_name")
            .and_then(Value::as_str)
            .ok_or_else(|| ConfigError::new(format!("{at}.plugin_name"), "is required"))?;
        if plugin != "file_watcher" {
            return Err(ConfigError::new(
                format!("{at}.plugin_name"),
                format!(
                    "unknown certificate provider plugin {plugin:?}: only \"file_watcher\" is supported"
                ),
            ));
        }
        let config = provider.get("config").unwrap_or(&Value::Null);
        let parsed =
            FileWatcherConfig::from_json(config).map_err(|e| e.within(&format!("{at}.config")))?;
        settings.insert(name.clone(), parsed);
    }
    Ok(settings)
}

/// Keeps an [`Identity`] loaded from files: reads them every
/// `refresh_interval` and installs the material when the files changed.
/// Bad files are logged and the last good material stays. The task stops
/// when the `FileWatcher` is dropped.
///
/// ```no_run
/// use sinew::tls::{FileWatcher, FileWatcherConfig, Identity};
///
/// # async fn run() -> Result<(), sinew::tls::IdentityError> {
/// let identity = Identity::new();
/// let config = FileWatcherConfig::new("/certs/cert.pem", "/certs/key.pem", "/certs/ca.pem");
/// let watcher = FileWatcher::start(config, identity.clone()).await?;
/// assert!(identity.is_ready());
/// # drop(watcher);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileWatcher {
    task: JoinHandle<()>,
}

impl FileWatcher {
    /// Reads the files now and installs them in `identity` (an error if
    /// they are bad: nothing is started), then re-reads them every
    /// `refresh_interval` on a tokio task.
    pub async fn start(
        config: FileWatcherConfig,
        identity: Identity,
    ) -> Result<Self, IdentityError> {
        let files = config.read()?;
        identity.set_credentials(files.credentials(&config)?);
        let task = tokio::spawn(watch(config, identity, files));
        Ok(Self { task })
    }
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch(config: FileWatcherConfig, identity: Identity, mut last: Files) {
    loop {
        tokio::time::sleep(config.refresh_interval).await;
        let files = match config.read() {
            Ok(files) => files,
            Err(error) => {
                tracing::warn!(%error, "certificate files unreadable; keeping the last good ones");
                continue;
            }
        };
        if files == last {
            continue;
        }
        match files.credentials(&config) {
            Ok(credentials) => {
                tracing::info!(
                    spiffe_id = %credentials.spiffe_id(),
                    "certificate files changed; new credentials installed"
                );
                identity.set_credentials(credentials);
                last = files;
            }
            // `last` stays: a half-written set of files is read again at
            // the next tick, and the fixed one installed then.
            Err(error) => {
                tracing::warn!(%error, "certificate files refused; keeping the last good ones")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600s"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("600"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("5m"), None);
    }

    #[test]
    fn missing_and_bad_fields_are_named() {
        let err = certificate_providers(
            r#"{"certificate_providers": {"p": {"plugin_name": "file_watcher",
                "config": {"certificate_file": "c", "private_key_file": "k"}}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.field(),
            "certificate_providers.p.config.ca_certificate_file"
        );
        let err = certificate_providers(
            r#"{"certificate_providers": {"p": {"plugin_name": "file_watcher",
                "config": {"certificate_file": "c", "private_key_file": "k",
                "ca_certificate_file": "a", "refresh_interval": 5}}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.field(),
            "certificate_providers.p.config.refresh_interval"
        );
        let err = certificate_providers(r#"{"certificate_providers": {"p": {}}}"#).unwrap_err();
        assert_eq!(err.field(), "certificate_providers.p.plugin_name");
        let err = certificate_providers("{").unwrap_err();
        assert_eq!(err.field(), "bootstrap");
        assert!(certificate_providers("{}").unwrap().is_empty());
    }
}
