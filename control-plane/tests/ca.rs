//! The certificate authority, through a real control plane over loopback
//! HTTP: signing CSRs for the admin and for bootstrap tokens, the leaf's
//! fields, the chain against the trust bundle, the root's files, loading
//! a root from files, rotation with overlap (on a clock the test moves),
//! and openssl as a peer we did not write.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::print_stderr
)]

mod common;

use common::{TOKEN, admin, raw_admin, scratch, within};
use http::{Method, StatusCode};
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::{Value, json};
use sinew_control_plane::ca::CaOptions;
use sinew_control_plane::{ControlPlane, StartError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;

const TD: &str = "example.org";
const ID: &str = "spiffe://example.org/ns/default/sa/reviews";

/// A clock the test moves, in unix seconds.
#[derive(Clone)]
struct Clock(Arc<AtomicU64>);

impl Clock {
    fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Self(Arc::new(AtomicU64::new(now)))
    }
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
    fn options(&self, dir: Option<&Path>) -> CaOptions {
        let clock = self.0.clone();
        CaOptions {
            trust_domain: TD.to_owned(),
            dir: dir.map(Path::to_path_buf),
            leaf_ttl: Duration::from_secs(3600),
            clock: Arc::new(move || UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::SeqCst))),
            ..CaOptions::default()
        }
    }
}

async fn start(options: CaOptions) -> Result<ControlPlane, StartError> {
    ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .ca(options)
        .start()
        .await
}

/// A new key and a CSR for it asking for `uris`.
fn csr(uris: &[&str]) -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .collect();
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, pem)
}

async fn issue(cp: &ControlPlane, token: Option<&str>, csr: &str) -> (StatusCode, Value) {
    admin(
        cp,
        Method::POST,
        "/v1/certificates",
        token,
        json!({ "csr": csr }),
    )
    .await
}

async fn bootstrap_token(cp: &ControlPlane, namespace: &str, service: &str) -> Value {
    let (status, answer) = admin(
        cp,
        Method::POST,
        "/v1/bootstrap-tokens",
        Some(TOKEN),
        json!({ "namespace": namespace, "service": service }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

/// The DER of each certificate in `pem`.
fn ders(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

async fn bundle(cp: &ControlPlane) -> Vec<Vec<u8>> {
    let (status, answer) = admin(cp, Method::GET, "/v1/ca", None, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    ders(answer["trust_bundle"].as_str().unwrap())
}

/// Whether the leaf (first of `chain`) verifies against `roots` at `at`,
/// for both client and server use.
fn verifies(chain_pem: &str, roots: &[Vec<u8>], at: u64) -> Result<(), String> {
    let leaf = CertificateDer::from(ders(chain_pem).remove(0));
    let roots: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors: Vec<_> = roots
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).unwrap())
        .collect();
    let end_entity = webpki::EndEntityCert::try_from(&leaf).map_err(|e| e.to_string())?;
    for usage in [
        webpki::KeyUsage::client_auth(),
        webpki::KeyUsage::server_auth(),
    ] {
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &[],
                UnixTime::since_unix_epoch(Duration::from_secs(at)),
                usage,
                None,
                None,
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[tokio::test]
async fn the_admin_token_gets_a_leaf_with_the_svid_fields_that_chains_to_the_bundle() {
    let clock = Clock::new();
    let cp = start(clock.options(None)).await.unwrap();
    let (key, request) = csr(&[ID]);
    let (status, answer) = issue(&cp, Some(TOKEN), &request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let now = clock.now();
    assert_eq!(answer["spiffe_id"], ID);
    assert_eq!(answer["expires_at"], now + 3600);
    assert_eq!(answer["refresh_at"], now + 1800);

    let chain = answer["certificate_chain"].as_str().unwrap();
    let der = ders(chain).remove(0);
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        sans.value.general_names,
        vec![GeneralName::URI(ID)],
        "one URI SAN, nothing else"
    );
    let constraints = leaf.basic_constraints().unwrap().unwrap();
    assert!(!constraints.value.ca, "CA=false");
    let usage = leaf.key_usage().unwrap().unwrap().value;
    assert!(usage.digital_signature());
    assert!(!usage.key_cert_sign() && !usage.crl_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let validity = leaf.validity();
    assert_eq!(
        validity.not_after.timestamp() as u64,
        now + 3600,
        "validity = the TTL"
    );
    assert!(
        validity.not_before.timestamp() as u64 <= now,
        "starts a little in the past"
    );
    assert!(validity.not_before.timestamp() as u64 >= now - 600);
    assert_eq!(
        leaf.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
        "the certificate is for the CSR's key"
    );

    let roots = bundle(&cp).await;
    assert_eq!(roots.len(), 1);
    assert_eq!(ders(answer["trust_bundle"].as_str().unwrap()), roots);
    verifies(chain, &roots, now).unwrap();
    // The root: CA, signs certificates, the trust domain as URI SAN.
    let (_, root) = x509_parser::parse_x509_certificate(&roots[0]).unwrap();
    assert!(root.basic_constraints().unwrap().unwrap().value.ca);
    let usage = root.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign());
    let sans = root.subject_alternative_name().unwrap().unwrap();
    let root_id = format!("spiffe://{TD}");
    assert_eq!(sans.value.general_names, vec![GeneralName::URI(&root_id)]);
    // Past its validity the leaf no longer verifies: the check can fail.
    assert!(verifies(chain, &roots, now + 3601).is_err());

    // Two leaves never share a serial.
    let (_, again) = issue(&cp, Some(TOKEN), &request).await;
    let der2 = ders(again["certificate_chain"].as_str().unwrap()).remove(0);
    let (_, leaf2) = x509_parser::parse_x509_certificate(&der2).unwrap();
    assert_ne!(leaf.raw_serial(), leaf2.raw_serial());

    // The PEM form of the bundle is the same roots.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let response = within(
        "the trust bundle",
        client.get(
            format!("http://{}/v1/trust-bundle", cp.admin_addr())
                .parse()
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-pem-file");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(ders(std::str::from_utf8(&body).unwrap()), roots);
    // And JSON when asked.
    let (status, answer) = raw_admin(
        &cp,
        Method::GET,
        "/v1/trust-bundle",
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["trust_domain"], TD);
    assert_eq!(ders(answer["trust_bundle"].as_str().unwrap()), roots);
    assert_eq!(answer["roots"][0]["standing"], "signing");
}

#[tokio::test]
async fn a_bootstrap_token_gets_its_own_identity_and_no_other() {
    let clock = Clock::new();
    let dir = scratch("ca-tokens");
    let cp = start(clock.options(Some(&dir))).await.unwrap();
    let issued = bootstrap_token(&cp, "default", "reviews").await;
    assert_eq!(issued["spiffe_id"], ID);
    assert_eq!(issued["expires_at"], clock.now() + 7 * 86_400);
    let token = issued["token"].as_str().unwrap().to_owned();
    let secret = token.split_once('.').unwrap().1;
    assert!(secret.len() >= 22, "at least 128 bits");
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "url-safe: {token}"
    );

    // No SAN in the CSR: the token's identity.
    let (_, request) = csr(&[]);
    let (status, answer) = issue(&cp, Some(&token), &request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["spiffe_id"], ID);
    // The same identity asked for: granted.
    let (_, request) = csr(&[ID]);
    let (status, _) = issue(&cp, Some(&token), &request).await;
    assert_eq!(status, StatusCode::OK);
    // Another identity: refused, naming the SAN.
    let (_, request) = csr(&["spiffe://example.org/ns/default/sa/ratings"]);
    let (status, answer) = issue(&cp, Some(&token), &request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("subjectAltName"),
        "{answer}"
    );

    // A bootstrap token is no admin token.
    let (status, _) = admin(
        &cp,
        Method::POST,
        "/v1/bootstrap-tokens",
        Some(&token),
        json!({ "namespace": "default", "service": "ratings" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin(&cp, Method::POST, "/v1/ca/rotate", Some(&token), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Kept hashed, 0600; a restart keeps the token.
    let file = dir.join(sinew_control_plane::ca::TOKENS_FILE);
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!stored.contains(secret), "the secret is not stored");
    assert_eq!(mode(&file), 0o600);
    cp.shutdown().await;
    let cp = start(clock.options(Some(&dir))).await.unwrap();
    let (_, request) = csr(&[]);
    let (status, answer) = issue(&cp, Some(&token), &request).await;
    assert_eq!(status, StatusCode::OK, "after a restart: {answer}");

    // Revoked: refused, after a restart too.
    let id = issued["id"].as_str().unwrap();
    let path = format!("/v1/bootstrap-tokens/{id}");
    let (status, _) = admin(&cp, Method::DELETE, &path, None, Value::Null).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "revoking needs the admin token"
    );
    let (status, answer) = admin(&cp, Method::DELETE, &path, Some(TOKEN), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = admin(&cp, Method::DELETE, &path, Some(TOKEN), Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = issue(&cp, Some(&token), &request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    cp.shutdown().await;
    let cp = start(clock.options(Some(&dir))).await.unwrap();
    let (status, _) = issue(&cp, Some(&token), &request).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "revocation survives a restart"
    );

    // Expiry.
    let short = admin(
        &cp,
        Method::POST,
        "/v1/bootstrap-tokens",
        Some(TOKEN),
        json!({ "namespace": "default", "service": "reviews", "ttl_seconds": 60 }),
    )
    .await
    .1;
    let short = short["token"].as_str().unwrap();
    assert_eq!(issue(&cp, Some(short), &request).await.0, StatusCode::OK);
    clock.advance(60);
    assert_eq!(
        issue(&cp, Some(short), &request).await.0,
        StatusCode::UNAUTHORIZED
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let clock = Clock::new();
    let cp = start(clock.options(None)).await.unwrap();
    let (_, good) = csr(&[ID]);

    // Proof of possession: a CSR whose content was changed after signing.
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tamper-me");
    params.subject_alt_names = vec![SanType::URI(ID.try_into().unwrap())];
    let request = params.serialize_request(&key).unwrap();
    let mut der = request.der().to_vec();
    let at = der.windows(9).position(|w| w == b"tamper-me").unwrap();
    der[at..at + 9].copy_from_slice(b"tamper-us");
    let forged = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    let (status, answer) = issue(&cp, Some(TOKEN), &forged).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(
        message.starts_with("csr:") && message.contains("signature"),
        "{message}"
    );

    let cases: [(&str, Value, StatusCode, &str); 7] = [
        (
            "not PEM",
            json!({ "csr": "hello" }),
            StatusCode::BAD_REQUEST,
            "csr:",
        ),
        ("no csr", json!({}), StatusCode::BAD_REQUEST, "csr"),
        (
            "csr not a string",
            json!({ "csr": 5 }),
            StatusCode::BAD_REQUEST,
            "csr:",
        ),
        (
            "unknown field",
            json!({ "csr": good, "ttl": 5 }),
            StatusCode::BAD_REQUEST,
            "ttl",
        ),
        (
            "two URI SANs",
            json!({ "csr": csr(&[ID, "spiffe://example.org/ns/x/sa/y"]).1 }),
            StatusCode::BAD_REQUEST,
            "csr.subjectAltName",
        ),
        (
            "another trust domain",
            json!({ "csr": csr(&["spiffe://other.org/ns/default/sa/reviews"]).1 }),
            StatusCode::FORBIDDEN,
            "csr.subjectAltName",
        ),
        (
            "no SAN with the admin token",
            json!({ "csr": csr(&[]).1 }),
            StatusCode::BAD_REQUEST,
            "csr.subjectAltName",
        ),
    ];
    for (what, body, expected, field) in cases {
        let (status, answer) =
            admin(&cp, Method::POST, "/v1/certificates", Some(TOKEN), body).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(field),
            "{what}: {answer}"
        );
    }

    // Tokens.
    let (status, _) = issue(&cp, None, &good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token");
    let (status, _) = issue(&cp, Some("wrong"), &good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong token");
    let (status, _) = issue(&cp, Some("abc.def"), &good).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a token shaped like a bootstrap token"
    );
    // Content type and size.
    let body = json!({ "csr": good }).to_string();
    let auth = ("authorization", "Bearer test-token");
    let (status, _) = raw_admin(&cp, Method::POST, "/v1/certificates", &[auth], body.clone()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({ "csr": "x".repeat(70_000) }).to_string();
    let (status, _) = raw_admin(
        &cp,
        Method::POST,
        "/v1/certificates",
        &[auth, ("content-type", "application/json")],
        huge,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Bootstrap token requests.
    for (body, field) in [
        (json!({ "namespace": "a/b", "service": "x" }), "namespace"),
        (json!({ "namespace": "a", "service": "" }), "service"),
        (
            json!({ "namespace": "a", "service": "x", "ttl_seconds": 1 }),
            "ttl_seconds",
        ),
        (json!({ "service": "x" }), "namespace"),
    ] {
        let (status, answer) =
            admin(&cp, Method::POST, "/v1/bootstrap-tokens", Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(field),
            "{answer}"
        );
    }
    // Still serving.
    assert_eq!(issue(&cp, Some(TOKEN), &good).await.0, StatusCode::OK);
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_root_is_kept_0600_and_the_same_root_is_loaded_on_restart() {
    let clock = Clock::new();
    let dir = scratch("ca-root").join("ca");
    let cp = start(clock.options(Some(&dir))).await.unwrap();
    let state = dir.join(sinew_control_plane::ca::STATE_FILE);
    assert_eq!(mode(&state), 0o600, "the key's file");
    assert_eq!(mode(&dir), 0o700, "the state directory");
    assert!(
        std::fs::read_to_string(&state)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let roots = bundle(&cp).await;
    let (_, request) = csr(&[ID]);
    let (_, answer) = issue(&cp, Some(TOKEN), &request).await;
    let chain = answer["certificate_chain"].as_str().unwrap().to_owned();
    cp.shutdown().await;

    let cp = start(clock.options(Some(&dir))).await.unwrap();
    assert_eq!(bundle(&cp).await, roots, "the same root");
    verifies(&chain, &bundle(&cp).await, clock.now()).unwrap();
    let (_, answer) = issue(&cp, Some(TOKEN), &request).await;
    verifies(
        answer["certificate_chain"].as_str().unwrap(),
        &roots,
        clock.now(),
    )
    .unwrap();
    assert_eq!(mode(&state), 0o600);
    cp.shutdown().await;

    // Another trust domain over the same state: refused, naming the file.
    let mut other = clock.options(Some(&dir));
    other.trust_domain = "other.org".to_owned();
    let error = start(other).await.unwrap_err().to_string();
    assert!(
        error.contains("ca.json") && error.contains("other.org"),
        "{error}"
    );
    // A state file that is not one: refused, naming it.
    std::fs::write(&state, "{ not json").unwrap();
    let error = start(clock.options(Some(&dir)))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("ca.json"), "{error}");
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

/// A CA certificate and key made outside the control plane, as files.
fn external_root(dir: &Path, is_ca: bool) -> (PathBuf, PathBuf, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = if is_ca {
        rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
    } else {
        rcgen::IsCa::ExplicitNoCa
    };
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{TD}").try_into().unwrap())];
    let cert = params.self_signed(&key).unwrap();
    let cert_file = dir.join(if is_ca { "root.pem" } else { "leaf.pem" });
    let key_file = dir.join(if is_ca { "root.key" } else { "leaf.key" });
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file, cert.pem())
}

#[tokio::test]
async fn a_root_given_as_files_signs_and_bad_files_stop_the_start_naming_them() {
    let clock = Clock::new();
    let dir = scratch("ca-files");
    let (cert_file, key_file, cert_pem) = external_root(&dir, true);
    let options = CaOptions {
        cert_file: Some(cert_file.clone()),
        key_file: Some(key_file.clone()),
        ..clock.options(None)
    };
    let cp = start(options.clone()).await.unwrap();
    let roots = bundle(&cp).await;
    assert_eq!(roots, ders(&cert_pem), "the given root, alone");
    let (_, request) = csr(&[ID]);
    let (status, answer) = issue(&cp, Some(TOKEN), &request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    verifies(
        answer["certificate_chain"].as_str().unwrap(),
        &roots,
        clock.now(),
    )
    .unwrap();
    // It is not rotated here.
    let (status, answer) = admin(&cp, Method::POST, "/v1/ca/rotate", Some(TOKEN), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    cp.shutdown().await;

    let (leaf_cert, leaf_key, _) = external_root(&dir, false);
    let (_, other_key, _) = external_root(&scratch("ca-files-other"), true);
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not pem at all").unwrap();
    let missing = dir.join("missing.pem");
    let cases = [
        (missing.clone(), key_file.clone(), "missing.pem"),
        (garbage.clone(), key_file.clone(), "garbage.pem"),
        (cert_file.clone(), garbage.clone(), "garbage.pem"),
        (cert_file.clone(), other_key.clone(), "root.key"),
        (leaf_cert.clone(), leaf_key.clone(), "leaf.pem"),
    ];
    for (cert, key, named) in cases {
        let options = CaOptions {
            cert_file: Some(cert),
            key_file: Some(key),
            ..clock.options(None)
        };
        let error = start(options).await.unwrap_err().to_string();
        assert!(error.contains(named), "{named}: {error}");
    }
    let options = CaOptions {
        cert_file: Some(cert_file),
        ..clock.options(None)
    };
    let error = start(options).await.unwrap_err().to_string();
    assert!(error.contains("key_file"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn without_an_admin_token_the_ca_admin_calls_are_refused() {
    // Unauthenticated writes (for registering on a laptop) do not extend
    // to minting identities.
    let cp = ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .allow_unauthenticated_writes()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let body = json!({ "namespace": "default", "service": "reviews" });
    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/bootstrap-tokens",
        Some("anything"),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("no admin token"),
        "{answer}"
    );
    let (status, _) = issue(&cp, None, &csr(&[ID]).1).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = issue(&cp, Some("anything"), &csr(&[ID]).1).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The trust bundle is open.
    let (status, answer) = admin(&cp, Method::GET, "/v1/ca", None, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["trust_domain"], "cluster.local");
}

#[tokio::test]
async fn out_of_range_options_stop_the_start_naming_them() {
    let clock = Clock::new();
    for (options, named) in [
        (
            CaOptions {
                leaf_ttl: Duration::from_secs(59),
                ..clock.options(None)
            },
            "leaf_ttl",
        ),
        (
            CaOptions {
                leaf_ttl: Duration::from_secs(31 * 86_400),
                ..clock.options(None)
            },
            "leaf_ttl",
        ),
        (
            CaOptions {
                trust_domain: "Not/Valid".to_owned(),
                ..clock.options(None)
            },
            "trust_domain",
        ),
    ] {
        let error = start(options).await.unwrap_err().to_string();
        assert!(error.contains(named), "{error}");
    }
    // The bounds themselves are accepted.
    for ttl in [60, 30 * 86_400] {
        let options = CaOptions {
            leaf_ttl: Duration::from_secs(ttl),
            ..clock.options(None)
        };
        start(options).await.unwrap().shutdown().await;
    }
}

#[tokio::test]
async fn rotation_keeps_the_old_root_until_its_last_leaf_expires() {
    let clock = Clock::new();
    let dir = scratch("ca-rotate");
    let cp = start(clock.options(Some(&dir))).await.unwrap();
    let old_roots = bundle(&cp).await;
    let (_, request) = csr(&[ID]);
    let (_, before) = issue(&cp, Some(TOKEN), &request).await;
    let old_leaf = before["certificate_chain"].as_str().unwrap().to_owned();
    let old_leaf_end = before["expires_at"].as_u64().unwrap();

    clock.advance(600);
    let (status, rotated) = admin(&cp, Method::POST, "/v1/ca/rotate", Some(TOKEN), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let roots = bundle(&cp).await;
    assert_eq!(roots.len(), 2, "both roots trusted");
    assert_eq!(roots[0], old_roots[0]);
    let new_root = ders(rotated["root"].as_str().unwrap());
    assert_eq!(roots[1], new_root[0]);

    // New leaves chain to the new root only; the old leaf still verifies.
    let (_, after) = issue(&cp, Some(TOKEN), &request).await;
    let new_leaf = after["certificate_chain"].as_str().unwrap();
    assert_eq!(ders(after["trust_bundle"].as_str().unwrap()), roots);
    verifies(new_leaf, &new_root, clock.now()).unwrap();
    assert!(verifies(new_leaf, &old_roots, clock.now()).is_err());
    verifies(new_leaf, &roots, clock.now()).unwrap();
    verifies(&old_leaf, &roots, clock.now()).unwrap();

    // A restart keeps both.
    cp.shutdown().await;
    let cp = start(clock.options(Some(&dir))).await.unwrap();
    assert_eq!(bundle(&cp).await, roots);

    // Until the old root's last leaf expires; then the old root leaves.
    clock.0.store(old_leaf_end - 1, Ordering::SeqCst);
    assert_eq!(bundle(&cp).await.len(), 2);
    clock.0.store(old_leaf_end, Ordering::SeqCst);
    assert_eq!(bundle(&cp).await, new_root);
    let (_, status) = admin(&cp, Method::GET, "/v1/ca", None, Value::Null).await;
    assert_eq!(status["roots"][0]["standing"], "signing", "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_explicit_overlap_and_a_delayed_activation() {
    let clock = Clock::new();
    let cp = start(clock.options(None)).await.unwrap();
    let old_roots = bundle(&cp).await;
    let (_, request) = csr(&[ID]);
    assert_eq!(issue(&cp, Some(TOKEN), &request).await.0, StatusCode::OK);

    // The new root is distributed first, and signs only from 100 s on.
    let (status, rotated) = admin(
        &cp,
        Method::POST,
        "/v1/ca/rotate",
        Some(TOKEN),
        json!({ "activate_in_seconds": 100, "overlap_seconds": 30 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["active_from"], clock.now() + 100);
    let new_root = ders(rotated["root"].as_str().unwrap());
    assert_eq!(bundle(&cp).await.len(), 2);
    let (_, answer) = issue(&cp, Some(TOKEN), &request).await;
    verifies(
        answer["certificate_chain"].as_str().unwrap(),
        &old_roots,
        clock.now(),
    )
    .unwrap();
    // One rotation at a time.
    let (status, answer) = admin(&cp, Method::POST, "/v1/ca/rotate", Some(TOKEN), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/ca/rotate",
        Some(TOKEN),
        json!({ "overlap_seconds": "soon" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("overlap_seconds"),
        "{answer}"
    );
    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/ca/rotate",
        Some(TOKEN),
        json!({ "activate_in_seconds": 400 * 86_400 }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("activate_in_seconds"),
        "{answer}"
    );

    clock.advance(100);
    let (_, answer) = issue(&cp, Some(TOKEN), &request).await;
    verifies(
        answer["certificate_chain"].as_str().unwrap(),
        &new_root,
        clock.now(),
    )
    .unwrap();
    assert_eq!(bundle(&cp).await.len(), 2, "during the overlap");
    // The overlap ends 30 s after activation, though old leaves live on.
    clock.advance(29);
    assert_eq!(bundle(&cp).await.len(), 2);
    clock.advance(1);
    assert_eq!(bundle(&cp).await, new_root);
}

#[tokio::test]
async fn openssl_makes_a_csr_that_is_signed_and_verifies_the_leaf() {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .output();
    if !found.is_ok_and(|o| o.status.success()) {
        eprintln!("openssl not found: this test is skipped");
        return;
    }
    let dir = scratch("ca-openssl");
    let cp = start(CaOptions {
        trust_domain: TD.to_owned(),
        ..CaOptions::default()
    })
    .await
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let san = format!("subjectAltName=URI:{ID}");
    let (ok, out) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "csr.pem",
        "-subj",
        "/CN=x",
        "-addext",
        &san,
    ]);
    assert!(ok, "{out}");
    let request = std::fs::read_to_string(dir.join("csr.pem")).unwrap();
    let (status, answer) = issue(&cp, Some(TOKEN), &request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    std::fs::write(
        dir.join("leaf.pem"),
        answer["certificate_chain"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("bundle.pem"),
        answer["trust_bundle"].as_str().unwrap(),
    )
    .unwrap();
    for purpose in ["sslclient", "sslserver"] {
        let (ok, out) = openssl(&[
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            "bundle.pem",
            "leaf.pem",
        ]);
        assert!(ok && out.contains("leaf.pem: OK"), "{purpose}: {out}");
    }
    // The leaf is for openssl's key.
    let (_, leaf_key) = openssl(&["x509", "-in", "leaf.pem", "-noout", "-pubkey"]);
    let (_, own_key) = openssl(&["pkey", "-in", "key.pem", "-pubout"]);
    assert_eq!(leaf_key, own_key);
    // A P-384 key signed with SHA-384 is signed too; signed with SHA-256
    // (which would come out described as a P-256 key) and RSA are refused.
    for (args, expected) in [
        (
            &["-pkeyopt", "ec_paramgen_curve:P-384", "-sha384"][..],
            StatusCode::OK,
        ),
        (
            &["-pkeyopt", "ec_paramgen_curve:P-384", "-sha256"][..],
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let mut line = vec![
            "req", "-new", "-newkey", "ec", "-nodes", "-keyout", "k.pem", "-out", "c.pem", "-subj",
            "/CN=x", "-addext", &san,
        ];
        line.extend_from_slice(args);
        let (ok, out) = openssl(&line);
        assert!(ok, "{out}");
        let request = std::fs::read_to_string(dir.join("c.pem")).unwrap();
        let (status, answer) = issue(&cp, Some(TOKEN), &request).await;
        assert_eq!(status, expected, "{args:?}: {answer}");
        if status == StatusCode::OK {
            std::fs::write(
                dir.join("leaf384.pem"),
                answer["certificate_chain"].as_str().unwrap(),
            )
            .unwrap();
            let (ok, out) = openssl(&["verify", "-CAfile", "bundle.pem", "leaf384.pem"]);
            assert!(ok, "{out}");
        } else {
            assert!(
                answer["error"].as_str().unwrap().starts_with("csr:"),
                "{answer}"
            );
        }
    }
    let (ok, out) = openssl(&[
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "r.pem", "-out", "rc.pem",
        "-subj", "/CN=x", "-addext", &san,
    ]);
    assert!(ok, "{out}");
    let request = std::fs::read_to_string(dir.join("rc.pem")).unwrap();
    let (status, answer) = issue(&cp, Some(TOKEN), &request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "RSA: {answer}");

    // And a root it did not issue from is refused: the check can fail.
    let (_, _, stranger) = external_root(&dir, true);
    std::fs::write(dir.join("stranger.pem"), stranger).unwrap();
    let (ok, out) = openssl(&["verify", "-CAfile", "stranger.pem", "leaf.pem"]);
    assert!(!ok, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_root_made_by_openssl_is_loaded_and_signs() {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .output();
    if !found.is_ok_and(|o| o.status.success()) {
        eprintln!("openssl not found: this test is skipped");
        return;
    }
    let dir = scratch("ca-openssl-root");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let san = format!("subjectAltName=URI:spiffe://{TD}");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-days",
        "30",
        "-subj",
        "/CN=openssl root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        &san,
    ]);
    // The key in SEC1 form too ("EC PRIVATE KEY"), as older tools write it.
    openssl(&["ec", "-in", "root.key", "-out", "root-sec1.key"]);
    for key in ["root.key", "root-sec1.key"] {
        let clock = Clock::new();
        let cp = start(CaOptions {
            cert_file: Some(dir.join("root.pem")),
            key_file: Some(dir.join(key)),
            ..clock.options(None)
        })
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
        let roots = bundle(&cp).await;
        assert_eq!(
            roots,
            ders(&std::fs::read_to_string(dir.join("root.pem")).unwrap())
        );
        let (_, request) = csr(&[ID]);
        let (status, answer) = issue(&cp, Some(TOKEN), &request).await;
        assert_eq!(status, StatusCode::OK, "{key}: {answer}");
        verifies(
            answer["certificate_chain"].as_str().unwrap(),
            &roots,
            clock.now(),
        )
        .unwrap();
        // The leaf ends with its TTL, well before the 30-day root.
        assert_eq!(answer["expires_at"], clock.now() + 3600);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_leaf_never_outlives_its_root() {
    let clock = Clock::new();
    let dir = scratch("ca-short-root");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let root_end = clock.now() + 7200;
    params.not_before = time::OffsetDateTime::from_unix_timestamp(clock.now() as i64 - 60).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(root_end as i64).unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("root.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("root.key"), key.serialize_pem()).unwrap();
    let cp = start(CaOptions {
        cert_file: Some(dir.join("root.pem")),
        key_file: Some(dir.join("root.key")),
        leaf_ttl: Duration::from_secs(86_400),
        ..clock.options(None)
    })
    .await
    .unwrap();
    let (_, request) = csr(&[ID]);
    let (status, answer) = issue(&cp, Some(TOKEN), &request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["expires_at"], root_end, "capped at the root's end");
    assert_eq!(answer["refresh_at"], clock.now() + 3600);
    // Past the root's end nothing is signed, and the error says to rotate.
    clock.advance(7200);
    let (status, answer) = issue(&cp, Some(TOKEN), &request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("expired"),
        "{answer}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
