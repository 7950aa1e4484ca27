//! The control plane's CA API as the workload speaks it: a CSR for a key
//! made here, the signed answer, and the trust bundle.

use super::admin_client::{AdminHttp, error_chain};
use super::bundle::TrustBundle;
use super::identity::Credentials;
use super::issuer::IssueError;
use super::spiffe_id::{SpiffeId, TrustDomain};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The largest answer read: a chain and a bundle are a few KiB.
const MAX_ANSWER: usize = 1024 * 1024;
/// How much of a refusal's message is kept.
const MAX_MESSAGE: usize = 512;

/// A leaf just signed, with its key, ready to install.
pub(crate) struct Issued {
    pub(crate) credentials: Credentials,
    /// When the CA says to renew (about half the lifetime).
    pub(crate) refresh_at: SystemTime,
}

/// The HTTP side: one pooled client for the control plane's admin API.
pub(crate) struct CaApi {
    /// Plain HTTP or TLS, as `base` says.
    http: AdminHttp,
    /// `http://host:port` or `https://host:port`, no trailing slash.
    base: String,
    /// `Bearer <token>`, marked sensitive so that hyper never logs it.
    authorization: HeaderValue,
    timeout: Duration,
}

impl CaApi {
    pub(crate) fn new(
        http: AdminHttp,
        base: String,
        authorization: HeaderValue,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            base,
            authorization,
            timeout,
        }
    }

    /// Makes a new ECDSA P-256 key, has the CA sign a CSR for it (asking
    /// for `spiffe_id`, or whatever the token grants), and checks the
    /// answer into [`Credentials`]. The key never leaves this function but
    /// inside the credentials.
    pub(crate) async fn sign(&self, spiffe_id: Option<&SpiffeId>) -> Result<Issued, IssueError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IssueError::Key(e.to_string()))?;
        let csr = csr_pem(&key, spiffe_id)?;
        let body = serde_json::json!({ "csr": csr }).to_string();
        let answer = self
            .call(Method::POST, "/v1/certificates", Some(Bytes::from(body)))
            .await?;
        let answer: Value =
            serde_json::from_slice(&answer).map_err(|e| bad(format!("not JSON: {e}")))?;
        let text = |field: &str| {
            answer
                .get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("`{field}` is missing or not a string")))
        };
        let seconds = |field: &str| {
            answer
                .get(field)
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("`{field}` is missing or not unix seconds")))
        };
        let id = SpiffeId::new(text("spiffe_id")?).map_err(|e| bad(format!("`spiffe_id`: {e}")))?;
        if let Some(asked) = spiffe_id
            && asked != &id
        {
            return Err(bad(format!(
                "`spiffe_id` is {id}, not the {asked} asked for"
            )));
        }
        let chain = CertificateDer::pem_slice_iter(text("certificate_chain")?.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("`certificate_chain`: {e}")))?;
        let bundle = parse_bundle(id.trust_domain(), text("trust_bundle")?.as_bytes())
            .map_err(|e| bad(format!("`trust_bundle`: {e}")))?;
        let refresh_at = UNIX_EPOCH + Duration::from_secs(seconds("refresh_at")?);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let credentials = Credentials::new(chain, key, bundle).map_err(IssueError::Install)?;
        if credentials.spiffe_id() != &id {
            return Err(bad(format!(
                "the certificate is for {}, the answer says {id}",
                credentials.spiffe_id()
            )));
        }
        Ok(Issued {
            credentials,
            refresh_at,
        })
    }

    /// The trusted roots now (`GET /v1/trust-bundle`), for `trust_domain`.
    pub(crate) async fn bundle(
        &self,
        trust_domain: &TrustDomain,
    ) -> Result<TrustBundle, IssueError> {
        let pem = self.call(Method::GET, "/v1/trust-bundle", None).await?;
        parse_bundle(trust_domain, &pem).map_err(|e| bad(format!("the trust bundle: {e}")))
    }

    /// One request, its answer's body when it is a success (read up to
    /// [`MAX_ANSWER`]), within the timeout.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, IssueError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |reason: String| IssueError::Unreachable {
            url: url.clone(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|e| unreachable(format!("{e}")))?;
        let mut request = Request::builder().method(method).uri(uri);
        if body.is_some() {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, self.authorization.clone());
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| bad(format!("the body: {e}")))?
                .to_bytes();
            Ok::<_, IssueError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))??;
        if status.is_success() {
            return Ok(body);
        }
        let message = refusal_message(&body);
        Err(match status {
            StatusCode::UNAUTHORIZED => IssueError::TokenRefused { message },
            StatusCode::FORBIDDEN => IssueError::Forbidden { message },
            other => IssueError::Refused {
                status: other.as_u16(),
                message,
            },
        })
    }
}

/// A PKCS#10 request for `key`, with `spiffe_id` as its only URI SAN when
/// given (a bootstrap token's CSR may leave it to the token). The subject
/// is empty: the CA ignores it.
fn csr_pem(key: &rcgen::KeyPair, spiffe_id: Option<&SpiffeId>) -> Result<String, IssueError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(id) = spiffe_id {
        let uri = rcgen::string::Ia5String::try_from(id.to_string())
            .map_err(|e| IssueError::Key(format!("the CSR's SAN: {e}")))?;
        params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    }
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(|e| IssueError::Key(format!("the CSR: {e}")))
}

fn parse_bundle(trust_domain: &TrustDomain, pem: &[u8]) -> Result<TrustBundle, String> {
    TrustBundle::from_pem(trust_domain.clone(), pem).map_err(|e| e.to_string())
}

fn bad(reason: String) -> IssueError {
    IssueError::BadAnswer { reason }
}

/// The `error` of a JSON refusal, or the start of the body.
fn refusal_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let mut message: String = message.chars().take(MAX_MESSAGE).collect();
    if message.is_empty() {
        message.push_str("(no message)");
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use x509_parser::prelude::FromDer;

    #[test]
    fn a_csr_carries_the_public_key_and_the_spiffe_id_and_nothing_private() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let id = SpiffeId::new("spiffe://example.org/ns/shop/sa/cart").unwrap();
        let pem = csr_pem(&key, Some(&id)).unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{pem}"
        );
        assert!(!pem.contains("PRIVATE"), "{pem}");
        let der =
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
                .unwrap();
        assert_eq!(
            csr.certification_request_info.subject_pki.raw,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        );
        // The private scalar: in PKCS#8's ECPrivateKey, after version 1,
        // an OCTET STRING of 32 bytes.
        let pkcs8 = key.serialize_der();
        let at = pkcs8
            .windows(5)
            .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
            .unwrap();
        let scalar = &pkcs8[at + 5..at + 37];
        assert!(
            !der.as_ref().windows(32).any(|w| w == scalar),
            "the private scalar is not in the CSR"
        );
        assert!(String::from_utf8_lossy(der.as_ref()).contains(&id.to_string()));
    }

    #[test]
    fn a_refusal_says_the_servers_reason_bounded() {
        assert_eq!(refusal_message(br#"{"error":"csr: bad"}"#), "csr: bad");
        assert_eq!(refusal_message(b""), "(no message)");
        assert_eq!(refusal_message(&[b'x'; 2000]).len(), MAX_MESSAGE);
    }
}
