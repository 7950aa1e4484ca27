//! The HTTP client Sinew's own clients of the control plane's admin API
//! share (registration, certificate issuance): plain HTTP for an
//! `http://` URL, TLS for an `https://` one, the server verified (webpki:
//! chain and the URL's host as a DNS or IP SAN) against a trust anchor
//! the caller gives. The anchor must come from outside: the issuer talks
//! to the admin API before it has any certificate or bundle.

use crate::error::ConfigError;
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The pooled client for one admin API.
pub(crate) type AdminHttp = Client<AdminConnector, Full<Bytes>>;

/// Where the admin API's trust anchor (the control plane's CA
/// certificate, PEM) comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AdminCa {
    /// The PEM itself (`admin_ca_pem`).
    Pem(Vec<u8>),
    /// A file holding it (`admin_ca_file`), read when the client is made.
    File(PathBuf),
}

impl AdminCa {
    /// The roots, or why not, naming the field they came from.
    fn roots(&self) -> Result<RootCertStore, ConfigError> {
        let (field, pem) = match self {
            Self::Pem(pem) => ("admin_ca_pem", pem.clone()),
            Self::File(path) => (
                "admin_ca_file",
                std::fs::read(path)
                    .map_err(|e| ConfigError::new("admin_ca_file", format!("{path:?}: {e}")))?,
            ),
        };
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new(field, format!("is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ConfigError::new(field, "holds no CERTIFICATE"));
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ConfigError::new(field, format!("is not a usable CA: {e}")))?;
        }
        Ok(roots)
    }
}

const SHAPE: &str = "must be http://host:port or https://host:port";

/// Whether `admin_url` is `https` (else `http`); any other scheme, or
/// none, or no host, is refused naming `admin_url`.
pub(crate) fn admin_https(admin_url: &str) -> Result<bool, ConfigError> {
    scheme_and_uri(admin_url).map(|(https, _)| https)
}

fn scheme_and_uri(admin_url: &str) -> Result<(bool, Uri), ConfigError> {
    let uri: Uri = admin_url
        .trim_end_matches('/')
        .parse()
        .map_err(|e| ConfigError::new("admin_url", format!("{SHAPE}: {e}")))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(ConfigError::new("admin_url", SHAPE)),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::new("admin_url", "has no host"));
    }
    Ok((https, uri))
}

/// `admin_url` parsed and checked: `http://host:port` or
/// `https://host:port`, no path. Returns the base (no trailing slash).
pub(crate) fn admin_base(admin_url: &str) -> Result<(String, bool), ConfigError> {
    let (https, uri) = scheme_and_uri(admin_url)?;
    let authority = uri
        .authority()
        .ok_or_else(|| ConfigError::new("admin_url", "has no host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(ConfigError::new(
            "admin_url",
            format!("{SHAPE}, without a path"),
        ));
    }
    let scheme = if https { "https" } else { "http" };
    Ok((format!("{scheme}://{authority}"), https))
}

/// The client for an admin API reached over `https` or not. With
/// `https`, `ca` is required (an error naming `admin_ca_file` otherwise).
pub(crate) fn admin_http(https: bool, ca: Option<&AdminCa>) -> Result<AdminHttp, ConfigError> {
    let tls = if https {
        let ca = ca.ok_or_else(|| {
            ConfigError::new(
                "admin_ca_file",
                "an https:// admin_url needs the control plane's CA certificate to verify it \
                 (admin_ca_file or admin_ca_pem)",
            )
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("admin_ca_file", e.to_string()))?
            .with_root_certificates(ca.roots()?)
            .with_no_client_auth();
        // The client speaks HTTP/1.1 only (as over plaintext).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(TlsConnector::from(Arc::new(config)))
    } else {
        None
    };
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    // `https` URIs pass through to the TLS step below.
    http.enforce_http(false);
    Ok(Client::builder(TokioExecutor::new()).build(AdminConnector { http, tls }))
}

/// TCP, then TLS for `https` URIs.
#[derive(Clone)]
pub(crate) struct AdminConnector {
    http: HttpConnector,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for AdminConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConnector")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl tower::Service<Uri> for AdminConnector {
    type Response = AdminStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<AdminStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let tls = self.tls.clone();
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let connecting = tower::Service::<Uri>::call(&mut self.http, uri);
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            if !https {
                return Ok(AdminStream::Plain(TokioIo::new(tcp)));
            }
            let tls = tls.ok_or("an https:// URL on a client made for http://")?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("`{host}` is no server name: {e}"))?;
            let stream = tls.connect(name, tcp).await.map_err(|e| {
                format!(
                    "TLS with the control plane at `{host}` failed \
                     (is the admin CA configured the control plane's?): {e}"
                )
            })?;
            Ok(AdminStream::Tls(TokioIo::new(Box::new(stream))))
        })
    }
}

/// A connection to the admin API, in clear or over TLS.
#[derive(Debug)]
pub(crate) enum AdminStream {
    Plain(TokioIo<TcpStream>),
    Tls(TokioIo<Box<TlsStream<TcpStream>>>),
}

impl Connection for AdminStream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(io) => io.connected(),
            Self::Tls(io) => io.inner().get_ref().0.connected(),
        }
    }
}

impl Read for AdminStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl Write for AdminStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Self::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// `error` and its sources, as hyper's client error alone says little
/// ("client error (Connect)").
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_admin_url_is_http_or_https_without_a_path() {
        assert_eq!(
            admin_base("https://cp:18001/").unwrap(),
            ("https://cp:18001".to_owned(), true)
        );
        assert_eq!(
            admin_base("http://127.0.0.1:18001").unwrap(),
            ("http://127.0.0.1:18001".to_owned(), false)
        );
        assert_eq!(admin_base("ftp://cp").unwrap_err().field(), "admin_url");
        assert_eq!(admin_base("http://cp/v1").unwrap_err().field(), "admin_url");
        // The registration keeps a path prefix (a proxy's), as before.
        assert!(admin_https("https://cp:18001/prefix").unwrap());
        assert_eq!(admin_https("cp:18001").unwrap_err().field(), "admin_url");
    }

    #[test]
    fn https_needs_a_trust_anchor_named_by_its_field() {
        let err = admin_http(true, None).unwrap_err();
        assert_eq!(err.field(), "admin_ca_file");
        assert!(admin_http(false, None).is_ok());
        let err = admin_http(true, Some(&AdminCa::Pem(b"nothing".to_vec()))).unwrap_err();
        assert_eq!(err.field(), "admin_ca_pem");
        let err = admin_http(true, Some(&AdminCa::File("/nonexistent/ca.pem".into()))).unwrap_err();
        assert_eq!(err.field(), "admin_ca_file");
    }
}
