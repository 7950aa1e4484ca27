//! The CA's HTTP API, on the admin listener:
//!
//! - `POST /v1/certificates`: sign a CSR (admin token, or a bootstrap token);
//! - `POST /v1/bootstrap-tokens`, `DELETE /v1/bootstrap-tokens/<id>` (admin):
//!   tokens for one workload with scopes (`certificate`, the default;
//!   `register`; `read`);
//! - `GET /v1/trust-bundle`: the trusted roots, PEM or JSON (open: roots
//!   are public);
//! - `GET /v1/ca`: the roots and their standing (open);
//! - `POST /v1/ca/rotate` (admin).

use super::{Refusal, Scope, csr};
use crate::admin::{Admin, Reply, bearer, error, read_body, reply};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The default lifetime of a bootstrap token.
const DEFAULT_TOKEN_TTL: u64 = 7 * 86_400;
/// The longest lifetime of a bootstrap token.
const MAX_TOKEN_TTL: u64 = 365 * 86_400;
/// The longest activation delay or overlap of a rotation: a root is made
/// for a year.
const MAX_ROTATION_SECONDS: u64 = 365 * 86_400;

/// Answers a request for the CA's paths; `None` for any other path.
pub(crate) async fn handle(
    admin: &Admin,
    request: Request<hyper::body::Incoming>,
) -> Result<Reply, Request<hyper::body::Incoming>> {
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    let answer = match (method, segments.as_slice()) {
        (Method::GET, ["v1", "trust-bundle"]) => trust_bundle(admin, &request),
        (Method::GET, ["v1", "ca"]) => status(admin),
        (Method::POST, ["v1", "certificates"]) => certificates(admin, request).await,
        (Method::POST, ["v1", "bootstrap-tokens"]) => issue_token(admin, request).await,
        (Method::DELETE, ["v1", "bootstrap-tokens", id]) => {
            let id = (*id).to_owned();
            match admin_only(admin, &request) {
                Some(denied) => denied,
                None => match admin.ca.revoke_token(&id).await {
                    Ok(()) => reply(StatusCode::OK, json!({ "id": id, "revoked": true })),
                    Err(refusal) => refused(refusal),
                },
            }
        }
        (Method::POST, ["v1", "ca", "rotate"]) => rotate(admin, request).await,
        (
            _,
            [
                "v1",
                "trust-bundle" | "certificates" | "bootstrap-tokens" | "ca",
                ..,
            ],
        ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
        _ => return Err(request),
    };
    Ok(answer)
}

fn refused(refusal: Refusal) -> Reply {
    let (status, message) = match refusal {
        Refusal::Invalid(m) => (StatusCode::BAD_REQUEST, m),
        Refusal::NotFound(m) => (StatusCode::NOT_FOUND, m),
        Refusal::Conflict(m) => (StatusCode::CONFLICT, m),
        Refusal::Full(m) => (StatusCode::TOO_MANY_REQUESTS, m),
        Refusal::Unavailable(m) => {
            tracing::error!(error = %m, "the CA cannot serve a request");
            (StatusCode::SERVICE_UNAVAILABLE, m)
        }
    };
    error(status, message)
}

/// The bearer token presented, if any.
fn presented<B>(request: &Request<B>) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
}

/// Whether `token` is the admin token. The CA's writes need a configured
/// token: unauthenticated writes, meant for registering on a laptop, do
/// not extend to minting identities.
fn is_admin(admin: &Admin, token: &str) -> bool {
    match &admin.access {
        crate::admin::WriteAccess::Token(t) => bool::from(token.as_bytes().ct_eq(t.as_bytes())),
        _ => false,
    }
}

fn wrong_type<B>(request: &Request<B>) -> Option<Reply> {
    (!crate::admin::is_json(request)).then(|| {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: must be `application/json`",
        )
    })
}

/// `None` when the request carries JSON and the admin token.
fn admin_only<B>(admin: &Admin, request: &Request<B>) -> Option<Reply> {
    if let Some(refusal) = wrong_type(request) {
        return Some(refusal);
    }
    if !matches!(admin.access, crate::admin::WriteAccess::Token(_)) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "the control plane has no admin token configured: the CA's admin calls are refused",
        ));
    }
    match presented(request) {
        Some(t) if is_admin(admin, t) => None,
        Some(_) => Some(error(StatusCode::UNAUTHORIZED, "wrong token")),
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>` (the admin token)",
        )),
    }
}

/// The body as `T`; the error names the field.
async fn json_body<T: DeserializeOwned>(
    admin: &Admin,
    body: hyper::body::Incoming,
    what: &str,
) -> Result<T, Reply> {
    let bytes = read_body(body, admin.read_timeout).await?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("invalid {what}: body: must be a JSON object"),
        ));
    }
    let mut reader = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid {what}: {field}: {}", e.inner()),
        )
    })?;
    reader.end().map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid {what}: body: {e}"),
        )
    })?;
    Ok(value)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateRequest {
    csr: String,
}

async fn certificates(admin: &Admin, request: Request<hyper::body::Incoming>) -> Reply {
    if let Some(refusal) = wrong_type(&request) {
        return refusal;
    }
    // Who is asking: the admin (any identity of the trust domain) or a
    // workload's bootstrap token (its own identity only).
    let granted = match presented(&request) {
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <token>` (the admin token or a bootstrap token)",
            );
        }
        Some(t) if is_admin(admin, t) => None,
        Some(t) => match admin.ca.token_identity(t) {
            Some(id) => Some(id),
            None if admin.ca.token_grant(t).is_some() => {
                return error(
                    StatusCode::FORBIDDEN,
                    "this token lacks the `certificate` scope",
                );
            }
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "wrong token: neither the admin token nor a live bootstrap token",
                );
            }
        },
    };
    let body: CertificateRequest = match json_body(admin, request.into_body(), "request").await {
        Ok(b) => b,
        Err(e) => return e,
    };
    let csr = match csr::parse(&body.csr) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let asked = match csr.uris.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "csr.subjectAltName: {} URI SANs; an X.509-SVID has exactly one",
                    csr.uris.len()
                ),
            );
        }
    };
    let spiffe_id = match (granted, asked) {
        (Some(granted), Some(asked)) if asked != granted => {
            return error(
                StatusCode::FORBIDDEN,
                format!("csr.subjectAltName: `{asked}` is not this token's identity (`{granted}`)"),
            );
        }
        (Some(granted), _) => granted,
        (None, Some(asked)) => {
            if let Err(e) = admin.ca.trust_domain().check_member(&asked) {
                return error(StatusCode::FORBIDDEN, format!("csr.subjectAltName: {e}"));
            }
            asked
        }
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "csr.subjectAltName: no URI SAN: with the admin token the CSR names the SPIFFE ID",
            );
        }
    };
    match admin.ca.sign(&csr, &spiffe_id).await {
        Ok(signed) => reply(
            StatusCode::OK,
            json!({
                "spiffe_id": spiffe_id,
                "certificate_chain": signed.chain_pem,
                "trust_bundle": signed.bundle_pem,
                "expires_at": signed.expires_at,
                "refresh_at": signed.refresh_at,
            }),
        ),
        Err(refusal) => refused(refusal),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    namespace: Option<String>,
    service: Option<String>,
    ttl_seconds: Option<u64>,
    /// Default: `["certificate"]`.
    scopes: Option<Vec<Scope>>,
}

async fn issue_token(admin: &Admin, request: Request<hyper::body::Incoming>) -> Reply {
    if let Some(denied) = admin_only(admin, &request) {
        return denied;
    }
    let body: TokenRequest =
        match json_body(admin, request.into_body(), "bootstrap token request").await {
            Ok(b) => b,
            Err(e) => return e,
        };
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TOKEN_TTL);
    if !(60..=MAX_TOKEN_TTL).contains(&ttl) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid bootstrap token request: ttl_seconds: {ttl} is out of range (60 to {MAX_TOKEN_TTL})"
            ),
        );
    }
    let mut scopes = body.scopes.unwrap_or_else(|| vec![Scope::Certificate]);
    scopes.sort();
    scopes.dedup();
    let Some(first) = scopes.first() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid bootstrap token request: scopes: empty: name at least one of `certificate`, `register`, `read`",
        );
    };
    let workload = match (body.namespace.as_deref(), body.service.as_deref()) {
        (Some(namespace), Some(service)) => Some((namespace, service)),
        (None, _) | (_, None) if scopes == [Scope::Read] => None,
        (None, _) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid bootstrap token request: namespace: needed for the `{}` scope",
                    first.as_str()
                ),
            );
        }
        (_, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid bootstrap token request: service: needed for the `{}` scope",
                    first.as_str()
                ),
            );
        }
    };
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    match admin
        .ca
        .issue_token(workload, scopes.clone(), Duration::from_secs(ttl))
        .await
    {
        Ok((issued, spiffe_id, expires_at)) => reply(
            StatusCode::CREATED,
            json!({
                "id": issued.id,
                "token": issued.token,
                "spiffe_id": spiffe_id,
                "scopes": names,
                "expires_at": expires_at,
            }),
        ),
        Err(Refusal::Invalid(m)) => error(
            StatusCode::BAD_REQUEST,
            format!("invalid bootstrap token request: {m}"),
        ),
        Err(refusal) => refused(refusal),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    overlap_seconds: Option<u64>,
    activate_in_seconds: Option<u64>,
}

async fn rotate(admin: &Admin, request: Request<hyper::body::Incoming>) -> Reply {
    if let Some(denied) = admin_only(admin, &request) {
        return denied;
    }
    let body: RotateRequest = match json_body(admin, request.into_body(), "rotation").await {
        Ok(b) => b,
        Err(e) => return e,
    };
    for (field, value) in [
        ("activate_in_seconds", body.activate_in_seconds),
        ("overlap_seconds", body.overlap_seconds),
    ] {
        if value.is_some_and(|v| v > MAX_ROTATION_SECONDS) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid rotation: {field}: at most {MAX_ROTATION_SECONDS} (a year)"),
            );
        }
    }
    let activate_in = Duration::from_secs(body.activate_in_seconds.unwrap_or(0));
    let overlap = body.overlap_seconds.map(Duration::from_secs);
    match admin.ca.rotate(activate_in, overlap).await {
        Ok((root, active_from)) => reply(
            StatusCode::OK,
            json!({
                "root": root,
                "active_from": active_from,
                "trust_bundle": bundle_pem(admin),
            }),
        ),
        Err(refusal) => refused(refusal),
    }
}

fn bundle_pem(admin: &Admin) -> String {
    admin
        .ca
        .bundle()
        .into_iter()
        .map(|(pem, _, _)| pem)
        .collect()
}

fn trust_bundle<B>(admin: &Admin, request: &Request<B>) -> Reply {
    let wants_json = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        return status(admin);
    }
    let mut response = Reply::new(Full::new(Bytes::from(bundle_pem(admin))));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-pem-file"),
    );
    response
}

fn status(admin: &Admin) -> Reply {
    let roots: Vec<_> = admin
        .ca
        .bundle()
        .into_iter()
        .map(|(pem, not_after, standing)| {
            json!({ "certificate": pem, "not_after": not_after, "standing": standing })
        })
        .collect();
    reply(
        StatusCode::OK,
        json!({
            "trust_domain": admin.ca.trust_domain().as_str(),
            "trust_bundle": bundle_pem(admin),
            "roots": roots,
        }),
    )
}
