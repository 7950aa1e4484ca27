//! The admin and registration API: JSON over HTTP/1.1.
//!
//! Reads are open; registration and every other write needs
//! `Authorization: Bearer <token>`. With no token configured, writes are
//! refused unless the control plane was started with unauthenticated
//! writes allowed on purpose.

use crate::clients::Clients;
use crate::registry::{Invalid, Registration};
use crate::state::State;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Who may write.
#[derive(Clone, Debug)]
pub enum WriteAccess {
    /// Callers presenting this bearer token.
    Token(String),
    /// Nobody: no token was configured.
    Refused,
    /// Anybody (chosen on purpose, for local development).
    Anyone,
}

/// What the API handlers share.
#[derive(Clone, Debug)]
pub struct Admin {
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) clients: Clients,
    pub(crate) access: WriteAccess,
    /// Wakes the lease expiry task when a lease is added.
    pub(crate) leases_changed: Arc<tokio::sync::Notify>,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Serialize) -> Reply {
    let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    reply(status, json!({ "error": message.into() }))
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Admin {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `None` when the caller may write; the refusal otherwise.
    fn refusal<B>(&self, request: &Request<B>) -> Option<Reply> {
        let token = match &self.access {
            WriteAccess::Anyone => return None,
            WriteAccess::Refused => {
                return Some(error(
                    StatusCode::UNAUTHORIZED,
                    "writes are refused: the control plane has no token configured",
                ));
            }
            WriteAccess::Token(token) => token,
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(p) if same(p.as_bytes(), token.as_bytes()) => None,
            Some(_) => Some(error(StatusCode::UNAUTHORIZED, "wrong token")),
            None => Some(error(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <token>`",
            )),
        }
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<hyper::body::Incoming>) -> Reply {
        let path = request.uri().path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (request.method().clone(), segments.as_slice()) {
            (Method::GET, ["v1", "health"]) => self.health(),
            (Method::GET, ["v1", "services"]) => self.services(),
            (Method::GET, ["v1", "clients"]) => reply(StatusCode::OK, self.clients.list()),
            (Method::GET, ["v1", "registrations"]) => self.registrations(),
            (Method::POST, ["v1", "registrations"]) => {
                if let Some(denied) = self.refusal(&request) {
                    return denied;
                }
                self.register(request.into_body()).await
            }
            (Method::PUT, ["v1", "registrations", id]) => {
                if let Some(denied) = self.refusal(&request) {
                    return denied;
                }
                let renewed = self.lock().registry.renew(id);
                match renewed {
                    Some(ttl) => reply(
                        StatusCode::OK,
                        json!({ "lease": id, "ttl_seconds": ttl.as_secs() }),
                    ),
                    None => error(
                        StatusCode::NOT_FOUND,
                        format!("no lease `{id}` (expired or never granted): register again"),
                    ),
                }
            }
            (Method::DELETE, ["v1", "registrations", id]) => {
                if let Some(denied) = self.refusal(&request) {
                    return denied;
                }
                let mut state = self.lock();
                if state.registry.deregister(id) {
                    state.republish();
                    reply(StatusCode::OK, json!({ "lease": id, "deregistered": true }))
                } else {
                    error(StatusCode::NOT_FOUND, format!("no lease `{id}`"))
                }
            }
            (
                _,
                [
                    "v1",
                    "health" | "services" | "clients" | "registrations",
                    ..,
                ],
            ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
            _ => error(StatusCode::NOT_FOUND, format!("no such resource: {path}")),
        }
    }

    fn health(&self) -> Reply {
        let state = self.lock();
        let published = state.published();
        reply(
            StatusCode::OK,
            json!({
                "status": "serving",
                "version": published.version,
                "mesh_file": state.mesh_status,
                "clients": self.clients.list().len(),
            }),
        )
    }

    fn services(&self) -> Reply {
        let published = self.lock().published();
        reply(
            StatusCode::OK,
            json!({
                "version": published.version,
                "services": published.config.services,
                "clusters": published.config.clusters,
            }),
        )
    }

    fn registrations(&self) -> Reply {
        let state = self.lock();
        let now = tokio::time::Instant::now();
        let mut list: Vec<_> = state
            .registry
            .leases()
            .map(|(id, l)| {
                json!({
                    "lease": id,
                    "registration": l.registration,
                    "ttl_seconds": l.ttl.as_secs(),
                    "expires_in_ms": l.expires.saturating_duration_since(now).as_millis() as u64,
                })
            })
            .collect();
        list.sort_by_key(|v| v["lease"].as_str().map(str::to_owned));
        reply(StatusCode::OK, list)
    }

    async fn register(&self, body: hyper::body::Incoming) -> Reply {
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {MAX_BODY} bytes or could not be read"),
                );
            }
        };
        let registration: Registration = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid registration: {e}"),
                );
            }
        };
        let mut state = self.lock();
        match state.registry.register(registration) {
            Ok((id, ttl)) => {
                state.republish();
                drop(state);
                self.leases_changed.notify_one();
                reply(
                    StatusCode::CREATED,
                    json!({ "lease": id, "ttl_seconds": ttl.as_secs() }),
                )
            }
            Err(Invalid { field, message }) => error(
                StatusCode::BAD_REQUEST,
                format!("invalid registration: {field}: {message}"),
            ),
        }
    }
}

/// Removes expired leases as they expire.
pub(crate) async fn expire_leases(admin: Admin) {
    loop {
        let next = admin.lock().registry.next_expiry();
        let wait = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wait => {}
            () = admin.leases_changed.notified() => continue,
        }
        let mut state = admin.lock();
        if state.registry.expire(tokio::time::Instant::now()) {
            state.republish();
        }
    }
}
