//! The discovery client's connection to a control plane over TLS: the
//! bootstrap's `channel_creds` of type `tls` (gRFC A65), whose `config`
//! names the files gRPC reads (`ca_certificate_file`, `certificate_file`,
//! `private_key_file`), with the mesh's own identity filling in what the
//! files leave out.
//!
//! - With `ca_certificate_file`, the control plane is verified as gRPC
//!   does: its certificate chains to those roots and names the host
//!   dialed. The client presents the files' certificate, or else the
//!   mesh's identity, or else none.
//! - Without it, the mesh's identity is needed: the control plane is
//!   verified as a SPIFFE peer against the identity's trust bundle and
//!   must be `spiffe://<trust-domain>/sinew/control-plane` (Sinew's
//!   control plane) unless `config.server_spiffe_id` names another; the
//!   client presents the identity's certificate.
//!
//! Files are read at each connection, so that renewed files are taken on
//! the next reconnect.

use crate::error::ConfigError;
use crate::tls::{Identity, SpiffeId};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tonic::transport::{Channel, Endpoint};

/// The path of Sinew's control plane's SPIFFE ID in a trust domain.
pub const CONTROL_PLANE_SPIFFE_PATH: &str = "/sinew/control-plane";

/// TLS 1.3 only, as the mesh's own connections.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A bootstrap server's `tls` channel credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelTls {
    /// PEM roots the control plane's certificate must chain to; its host
    /// name is checked too.
    #[serde(default)]
    pub ca_certificate_file: Option<PathBuf>,
    /// PEM certificate chain to present (with `private_key_file`).
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// PEM private key of `certificate_file`.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// Read by gRPC (how often it rereads the files); Sinew rereads them
    /// at each connection.
    #[serde(default)]
    pub refresh_interval: Option<String>,
    /// Sinew's own: the control plane's SPIFFE ID when it is verified
    /// against the mesh identity's bundle. Default:
    /// `spiffe://<trust-domain>/sinew/control-plane`.
    #[serde(default)]
    pub server_spiffe_id: Option<String>,
}

impl ChannelTls {
    /// Checks the fields that go together; the error names the field
    /// under `at`.
    pub(super) fn validate(&self, at: &str) -> Result<(), ConfigError> {
        match (&self.certificate_file, &self.private_key_file) {
            (Some(_), None) => Err(ConfigError::new(
                format!("{at}.private_key_file"),
                "needed with certificate_file",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                format!("{at}.certificate_file"),
                "needed with private_key_file",
            )),
            _ => Ok(()),
        }?;
        if let Some(id) = &self.server_spiffe_id {
            id.parse::<SpiffeId>()
                .map_err(|e| ConfigError::new(format!("{at}.server_spiffe_id"), e.to_string()))?;
        }
        Ok(())
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    crate::config::read_at_most(path, 1 << 20)
        .map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client config `tls` and `identity` make.
fn client_config(
    tls: &ChannelTls,
    identity: Option<&Identity>,
) -> Result<Arc<ClientConfig>, String> {
    let alpn = vec![b"h2".to_vec()];
    let Some(ca_file) = &tls.ca_certificate_file else {
        let identity = identity.ok_or(
            "channel_creds tls: without ca_certificate_file, the mesh needs an identity (its trust bundle verifies the control plane)",
        )?;
        let expected = match &tls.server_spiffe_id {
            Some(id) => id.parse::<SpiffeId>().map_err(|e| e.to_string())?,
            None => {
                let own = identity
                    .spiffe_id()
                    .ok_or("channel_creds tls: the mesh's identity has no certificate yet")?;
                format!("spiffe://{}{CONTROL_PLANE_SPIFFE_PATH}", own.trust_domain())
                    .parse::<SpiffeId>()
                    .map_err(|e| e.to_string())?
            }
        };
        return identity
            .client_config([expected], alpn)
            .map_err(|e| e.to_string());
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(ca_file, "ca_certificate_file")?) {
        let cert = cert.map_err(|e| format!("ca_certificate_file: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("ca_certificate_file: {e}"))?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match (&tls.certificate_file, &tls.private_key_file, identity) {
        (Some(cert), Some(key), _) => {
            let chain = CertificateDer::pem_slice_iter(&read(cert, "certificate_file")?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("certificate_file: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&read(key, "private_key_file")?)
                .map_err(|e| format!("private_key_file: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("certificate_file: {e}"))?
        }
        (_, _, Some(identity)) => builder.with_client_cert_resolver(identity.resolver()),
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// A channel to `endpoint`, over TLS when `tls` is given.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    tls: Option<&ChannelTls>,
    identity: Option<&Identity>,
) -> Result<Channel, String> {
    let Some(tls) = tls else {
        return endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect: {}", super::ads::source_chain(&e)));
    };
    let config = client_config(tls, identity)?;
    let host = endpoint.uri().host().unwrap_or_default();
    // `[::1]` in a URI is `::1` as a server name.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = ServerName::try_from(host).map_err(|e| format!("server name: {e}"))?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    let connector = tower::service_fn(move |uri: http::Uri| {
        let config = config.clone();
        let name = name.clone();
        let mut http = http.clone();
        async move {
            use tower::Service;
            let tcp = http.call(uri).await.map_err(std::io::Error::other)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp.into_inner())
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("cannot connect over TLS: {}", super::ads::source_chain(&e)))
}
