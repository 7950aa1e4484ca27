//! The admin and registration API: JSON over HTTP/1.1.
//!
//! Every call but `/v1/health`, `/v1/trust-bundle`, `/v1/ca` and
//! `/dashboard` (public; the dashboard's page holds no data, it reads
//! `/v1/graph`) needs `Authorization: Bearer <token>` (the scheme in any case, the
//! token compared in constant time): the admin token, which may do
//! anything, or a token the admin issued with scopes (`read` for reads,
//! `register` for the leases of its own service only; see
//! [`crate::ca::Scope`]). A missing or unknown token is `401`, a
//! token without the scope needed `403`. Reads are open only when the
//! control plane was started so on purpose. Writes also need
//! `Content-Type: application/json`, which
//! a web page cannot send to another origin without asking first: a form
//! on some page cannot register endpoints, even with unauthenticated
//! writes allowed. With no token configured, writes are refused unless
//! the control plane was started with unauthenticated writes allowed on
//! purpose.

use crate::ca::Scope;
use crate::clients::Clients;
use crate::registry::{Invalid, Registration};
use crate::state::{Refusal, State};
use crate::store::Store;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;

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

/// Who may read (`/v1/services`, `/v1/clients`, `/v1/registrations`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAccess {
    /// Callers presenting the admin token or a token with the `read`
    /// scope.
    Token,
    /// Anybody (chosen on purpose, for local development).
    Anyone,
}

/// What a request needs of its caller.
enum Need<'a> {
    Read,
    /// Writing the leases of this service (cluster).
    Register(&'a str),
}

/// What the API handlers share.
#[derive(Clone, Debug)]
pub struct Admin {
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) clients: Clients,
    pub(crate) access: WriteAccess,
    pub(crate) reads: ReadAccess,
    /// Wakes the lease expiry task when a lease is added.
    pub(crate) leases_changed: Arc<tokio::sync::Notify>,
    /// Writes the registry to its file.
    pub(crate) store: Store,
    /// How long a request's body may take to arrive.
    pub(crate) read_timeout: Duration,
    /// The certificate authority.
    pub(crate) ca: crate::ca::Ca,
    /// What workloads pushed, for `/v1/graph`.
    pub(crate) telemetry: crate::telemetry::Telemetry,
}

pub(crate) type Reply = Response<Full<Bytes>>;

pub(crate) fn reply(status: StatusCode, body: impl Serialize) -> Reply {
    let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    reply(status, json!({ "error": message.into() }))
}

/// The credentials of an `Authorization: Bearer <token>` header; the
/// scheme is case-insensitive (RFC 9110).
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Whether the request says its body is JSON (`application/json`, with
/// parameters or not).
pub(crate) fn is_json<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

impl Admin {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `None` when the caller may write; the refusal otherwise.
    fn refusal<B>(&self, request: &Request<B>, need: Need<'_>) -> Option<Reply> {
        if !is_json(request) {
            return Some(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type: writes must be sent as `application/json`",
            ));
        }
        self.denied(request, need)
    }

    /// `None` when the caller may do what `need` says; the refusal (`401`
    /// without a valid token, `403` for a token without the scope)
    /// otherwise.
    fn denied<B>(&self, request: &Request<B>, need: Need<'_>) -> Option<Reply> {
        let open = match need {
            Need::Read => self.reads == ReadAccess::Anyone,
            Need::Register(_) => matches!(self.access, WriteAccess::Anyone),
        };
        if open {
            return None;
        }
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        let Some(presented) = presented else {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <token>`",
            ));
        };
        if let WriteAccess::Token(token) = &self.access
            && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
        {
            return None;
        }
        let Some((spiffe_id, scopes)) = self.ca.token_grant(presented) else {
            let message = match (&need, &self.access) {
                (Need::Register(_), WriteAccess::Refused) => {
                    "writes are refused: the control plane has no token configured"
                }
                _ => "wrong token",
            };
            return Some(error(StatusCode::UNAUTHORIZED, message));
        };
        let (scope, allowed) = match need {
            Need::Read => (Scope::Read, true),
            Need::Register(service) => (
                Scope::Register,
                crate::node_identity::service_of(&spiffe_id) == service,
            ),
        };
        if !scopes.contains(&scope) {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!("this token lacks the `{}` scope", scope.as_str()),
            ));
        }
        if !allowed {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!("this token may register its own service only ({spiffe_id})"),
            ));
        }
        None
    }

    /// The service (cluster) lease `id` registers; `None` when there is no
    /// such lease.
    fn lease_service(&self, id: &str) -> Option<String> {
        self.lock()
            .registry
            .lease(id)
            .map(|l| l.registration.name.clone())
    }

    /// The refusal of a write to lease `id`: authenticated before the
    /// lease is looked up, so that its existence is not revealed to a
    /// caller without a valid token.
    fn lease_refusal<B>(&self, request: &Request<B>, id: &str) -> Option<Reply> {
        match self.refusal(request, Need::Register("")) {
            // The admin token, or writes open to anyone.
            None => return None,
            // A scoped token: it may write its own service's leases.
            Some(refused) if refused.status() == StatusCode::FORBIDDEN => {}
            Some(refused) => return Some(refused),
        }
        let service = self.lease_service(id)?;
        self.refusal(request, Need::Register(&service))
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<hyper::body::Incoming>) -> Reply {
        let request = match crate::ca::handle(self, request).await {
            Ok(answered) => return answered,
            Err(request) => request,
        };
        let path = request.uri().path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if request.method() == Method::GET
            && matches!(
                segments.as_slice(),
                ["v1", "services" | "clients" | "registrations" | "graph"]
            )
            && let Some(denied) = self.denied(&request, Need::Read)
        {
            return denied;
        }
        match (request.method().clone(), segments.as_slice()) {
            (Method::GET, ["v1", "health"]) => self.health(),
            (Method::GET, ["v1", "services"]) => self.services(),
            (Method::GET, ["v1", "clients"]) => reply(StatusCode::OK, self.clients.list()),
            (Method::GET, ["v1", "graph"]) => crate::graph::graph(self),
            // The page only: it holds no data, and reads `/v1/graph` with
            // the token it is given (see `crate::dashboard`).
            (Method::GET, ["dashboard"]) => crate::dashboard::page(),
            (Method::GET, ["v1", "registrations"]) => self.registrations(),
            (Method::POST, ["v1", "registrations"]) => {
                // Who may register which service is known once the body is
                // read; a caller without a valid token is refused first.
                if let Some(denied) = self.refusal(&request, Need::Register(""))
                    && denied.status() != StatusCode::FORBIDDEN
                {
                    return denied;
                }
                let (parts, body) = request.into_parts();
                self.register(&Request::from_parts(parts, ()), body).await
            }
            (Method::PUT, ["v1", "registrations", id]) => {
                if let Some(denied) = self.lease_refusal(&request, id) {
                    return denied;
                }
                let renewed = self.lock().renew(id);
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
                if let Some(denied) = self.lease_refusal(&request, id) {
                    return denied;
                }
                let change = {
                    let mut state = self.lock();
                    state.deregister(id).then(|| state.registry.changes())
                };
                match change {
                    Some(change) => {
                        let stored = self.persist(change).await;
                        reply(
                            StatusCode::OK,
                            json!({ "lease": id, "deregistered": true, "stored": stored }),
                        )
                    }
                    None => error(StatusCode::NOT_FOUND, format!("no lease `{id}`")),
                }
            }
            (
                _,
                [
                    "v1",
                    "health" | "services" | "clients" | "registrations" | "graph",
                    ..,
                ],
            ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here"),
            _ => error(StatusCode::NOT_FOUND, format!("no such resource: {path}")),
        }
    }

    /// Writes registry change `change` to the store; whether it was
    /// (`None` without a store).
    async fn persist(&self, change: u64) -> Option<bool> {
        self.store
            .persist(change, Duration::from_secs(10))
            .await
            .map(|r| r.is_ok())
    }

    fn health(&self) -> Reply {
        let state = self.lock();
        let published = state.published();
        let store = self.store.status();
        // Serving, always (the last good version stays in force); degraded
        // while something could not be taken, published or stored.
        let degraded = state.mesh_status.error.is_some()
            || state.publish_status.error.is_some()
            || store.error.is_some()
            || !store.dropped.is_empty();
        reply(
            StatusCode::OK,
            json!({
                "status": if degraded { "degraded" } else { "serving" },
                "version": published.version,
                "mesh_file": state.mesh_status,
                "publish": state.publish_status,
                "store": store,
                "leases": state.registry.leases().count(),
                "clients": self.clients.list().len(),
            }),
        )
    }

    fn services(&self) -> Reply {
        let published = self.lock().published();
        let config = published.config();
        reply(
            StatusCode::OK,
            json!({
                "version": published.version,
                "services": config.services,
                "clusters": config.clusters,
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

    async fn register(&self, head: &Request<()>, body: hyper::body::Incoming) -> Reply {
        let bytes = match read_body(body, self.read_timeout).await {
            Ok(bytes) => bytes,
            Err(refusal) => return refusal,
        };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid registration: body: must be a JSON object",
            );
        }
        let mut reader = serde_json::Deserializer::from_slice(&bytes);
        let registration: Registration = match serde_path_to_error::deserialize(&mut reader) {
            Ok(r) => r,
            Err(e) => {
                let path = e.path().to_string();
                // The body as a whole when no field is to blame.
                let field = if path == "." { "body".to_owned() } else { path };
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid registration: {field}: {}", e.inner()),
                );
            }
        };
        if let Err(e) = reader.end() {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid registration: body: {e}"),
            );
        }
        if let Some(denied) = self.denied(head, Need::Register(&registration.name)) {
            return denied;
        }
        let registered = {
            let mut state = self.lock();
            state
                .register(registration)
                .map(|granted| (granted, state.registry.changes()))
        };
        match registered {
            Ok(((id, ttl), change)) => {
                self.leases_changed.notify_one();
                let stored = self.persist(change).await;
                reply(
                    StatusCode::CREATED,
                    json!({ "lease": id, "ttl_seconds": ttl.as_secs(), "stored": stored }),
                )
            }
            Err(Refusal::Invalid(Invalid { field, message })) => error(
                StatusCode::BAD_REQUEST,
                format!("invalid registration: {field}: {message}"),
            ),
            Err(Refusal::Full(Invalid { field, message })) => error(
                StatusCode::TOO_MANY_REQUESTS,
                format!("registration refused: {field}: {message}"),
            ),
        }
    }
}

/// The body of a request: at most [`MAX_BODY`] bytes (`413`), arrived
/// within `timeout` (`408`).
pub(crate) async fn read_body(
    body: hyper::body::Incoming,
    timeout: Duration,
) -> Result<Bytes, Reply> {
    let read = Limited::new(body, MAX_BODY).collect();
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes or could not be read"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", timeout.as_secs()),
        )),
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
        let expired = admin.lock().expire(tokio::time::Instant::now());
        if expired {
            admin.store.wake();
        }
    }
}
