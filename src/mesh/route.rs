use super::Mesh;
use super::runtime::Routing;
use crate::config::{Route, Snapshot};
use http::Request;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a request could not be routed. Callers answer it with 503 (gRPC
/// `UNAVAILABLE`) and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// The mesh has no service by that name.
    UnknownService(String),
    /// The route's cluster has no endpoint in service.
    NoEndpoint(String),
    /// The service has no route that takes the request.
    NoRoute {
        /// The service.
        service: String,
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// The route that took the request fails its requests (its
    /// configuration asks for something Sinew cannot do: see
    /// [`RouteConfig::fail`](crate::config::RouteConfig::fail)).
    RouteFails {
        /// The service.
        service: String,
        /// The route's index among the service's routes.
        route: usize,
        /// Why.
        reason: String,
    },
    /// The control plane has not (yet) configured the service.
    Undiscovered {
        /// The service.
        service: String,
        /// Why: how long it was waited for, and the connection's state.
        reason: String,
    },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::UnknownService(name) => write!(f, "unknown service `{name}`"),
            RouteError::NoEndpoint(cluster) => {
                write!(f, "cluster `{cluster}` has no endpoint in service")
            }
            RouteError::NoRoute {
                service,
                method,
                path,
            } => write!(f, "service `{service}` has no route for {method} {path}"),
            RouteError::RouteFails {
                service,
                route,
                reason,
            } => write!(
                f,
                "service `{service}` routes[{route}] fails its requests: {reason}"
            ),
            RouteError::Undiscovered { service, reason } => {
                write!(f, "service `{service}` is not configured: {reason}")
            }
        }
    }
}

impl std::error::Error for RouteError {}

/// A cluster threshold was reached: the request (or retry) was not sent.
/// (Envoy's circuit-breaker overflow.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOverloaded {
    /// The cluster.
    pub cluster: String,
    /// The threshold reached: `max_pending` (when `max_requests` are in
    /// flight and `max_pending` already wait) or `max_retries`.
    pub threshold: &'static str,
    /// Its value.
    pub limit: u32,
}

impl fmt::Display for ClusterOverloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cluster `{}` is at its {} ({})",
            self.cluster, self.threshold, self.limit
        )
    }
}

impl std::error::Error for ClusterOverloaded {}

/// Where one request goes: its route and the cluster picked by weight.
#[derive(Clone, Debug)]
pub struct RouteDecision {
    snapshot: Arc<Snapshot>,
    route: usize,
    service: usize,
    cluster: Arc<str>,
}

impl RouteDecision {
    /// The cluster picked from the route's split.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The route's overall timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.route().timeout()
    }

    /// The route that took the request.
    pub fn route(&self) -> &Route {
        // The indices were found in this same snapshot.
        let services = self.snapshot.services_in_order();
        &services[self.service].routes()[self.route]
    }

    /// The picked cluster's name, shared with the snapshot.
    pub(super) fn cluster_arc(&self) -> &Arc<str> {
        &self.cluster
    }

    /// (service, route) indices in the snapshot.
    pub(super) fn indices(&self) -> (usize, usize) {
        (self.service, self.route)
    }

    /// The snapshot the decision was made from (requests keep using it
    /// even if a newer one is swapped in meanwhile).
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }
}

impl Mesh {
    /// Routes a request for `service`: one snapshot load, the first route
    /// that matches, and a cluster picked by the route's weights.
    pub fn route<B>(
        &self,
        service: &str,
        request: &Request<B>,
    ) -> Result<RouteDecision, RouteError> {
        self.decide(&self.shared.routing.load(), service, request)
    }

    pub(super) fn decide<B>(
        &self,
        routing: &Routing,
        service: &str,
        request: &Request<B>,
    ) -> Result<RouteDecision, RouteError> {
        let snapshot = routing.snapshot.clone();
        let Some(index) = snapshot.service_index(service) else {
            return Err(RouteError::UnknownService(service.to_owned()));
        };
        let routes = snapshot.services_in_order()[index].routes();
        let Some(route) = routes.iter().position(|r| r.matches(request)) else {
            return Err(RouteError::NoRoute {
                service: service.to_owned(),
                method: request.method().to_string(),
                path: request.uri().path().to_owned(),
            });
        };
        let chosen = &routes[route];
        if let Some(reason) = chosen.fails() {
            return Err(RouteError::RouteFails {
                service: service.to_owned(),
                route,
                reason: reason.to_owned(),
            });
        }
        let roll = fastrand::u64(..chosen.total_weight().max(1));
        let cluster = chosen.cluster_arc(roll);
        Ok(RouteDecision {
            snapshot,
            route,
            service: index,
            cluster,
        })
    }
}
