//! [`Mesh::explain`]: what the mesh would do with a request, without
//! sending anything.

use super::Mesh;
use super::route::RouteError;
use super::runtime::EndpointView;
use crate::config::{FaultConfig, Health, LbPolicy, Locality, ThresholdsConfig};
use crate::retry::{RetryConfig, RetryStats};
use http::Request;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the mesh would do with a request: made by [`Mesh::explain`].
/// Its `Display` is a readable summary (what `sinew call --explain`
/// prints).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Explanation {
    /// The version of the configuration snapshot in force.
    pub version: u64,
    /// The service.
    pub service: String,
    /// The index of the route that takes the request among the service's
    /// routes (the first that matches).
    pub route: usize,
    /// The route's overall timeout.
    pub timeout: Option<Duration>,
    /// The route's retry (or hedging) policy, budget included.
    pub retry: Option<RetryConfig>,
    /// The route's retry counters so far (retries, hedges, budget
    /// refusals).
    pub retry_stats: Option<RetryStats>,
    /// The faults the route injects.
    pub fault: Option<FaultConfig>,
    /// Whether the service answers `sinew-debug: 1` with the decision's
    /// short form.
    pub debug_header: bool,
    /// The route's split: each cluster with its chance.
    pub split: Vec<ClusterExplanation>,
}

/// One cluster of a route's split.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterExplanation {
    /// Its name.
    pub name: String,
    /// Its weight in the split.
    pub weight: u64,
    /// The chance a request goes to it (weight over the split's total).
    pub probability: f64,
    /// Its load-balancing policy.
    pub lb: Option<LbPolicy>,
    /// Its thresholds (`max_requests`, `max_pending`, `max_retries`).
    pub thresholds: Option<ThresholdsConfig>,
    /// Its breaker's state, when it has a breaker.
    #[cfg(feature = "breaker")]
    pub breaker: Option<crate::breaker::State>,
    /// Whether its endpoints are spoken to over mutual TLS only.
    pub mtls: bool,
    /// Whether outlier detection is on.
    pub outlier_detection: bool,
    /// Its endpoints, in configuration order; empty when the cluster is
    /// unknown to the snapshot.
    pub endpoints: Vec<EndpointExplanation>,
}

/// One endpoint of a cluster and its state.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EndpointExplanation {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its weight among the cluster's endpoints.
    pub weight: u32,
    /// Its failover priority (0 first).
    pub priority: u32,
    /// Where it runs.
    pub locality: Arc<Locality>,
    /// Its reported health.
    pub health: Health,
    /// Whether outlier detection has ejected it now.
    pub ejected: bool,
    /// Whether the picker sends it traffic now (healthy, not ejected, in
    /// the priority and zone that take traffic, or every endpoint below the
    /// panic threshold).
    pub in_rotation: bool,
}

impl Mesh {
    /// What the mesh would do with `request` to `service`, without sending
    /// it (nor counting it anywhere): the route that takes it, the split
    /// with each cluster's chance, each cluster's endpoints and their
    /// state, the timeout, the retry policy, the breaker, the thresholds and
    /// the faults. A request that cannot be routed is the [`RouteError`] a
    /// call would fail with.
    ///
    /// ```no_run
    /// # fn f(mesh: sinew::mesh::Mesh) -> Result<(), sinew::error::BoxError> {
    /// let request = http::Request::get("/reviews/1").body(())?;
    /// println!("{}", mesh.explain("reviews", &request)?);
    /// # Ok(()) }
    /// ```
    pub fn explain<B>(
        &self,
        service: &str,
        request: &Request<B>,
    ) -> Result<Explanation, RouteError> {
        let routing = self.shared.routing.load();
        let snapshot = &routing.snapshot;
        let Some(index) = snapshot.service_index(service) else {
            return Err(RouteError::UnknownService(service.to_owned()));
        };
        let found = &snapshot.services_in_order()[index];
        let Some(route_index) = found.routes().iter().position(|r| r.matches(request)) else {
            return Err(RouteError::NoRoute {
                service: service.to_owned(),
                method: request.method().to_string(),
                path: request.uri().path().to_owned(),
            });
        };
        let route = &found.routes()[route_index];
        if let Some(reason) = route.fails() {
            return Err(RouteError::RouteFails {
                service: service.to_owned(),
                route: route_index,
                reason: reason.to_owned(),
            });
        }
        let total = route.total_weight().max(1) as f64;
        let split = route
            .split()
            .map(|(name, weight)| {
                let runtime = routing.cluster(name);
                let config = snapshot.cluster(name).map(|c| c.config());
                let endpoints = runtime
                    .map(|r| r.endpoint_view().iter().map(explain_endpoint).collect())
                    .unwrap_or_default();
                ClusterExplanation {
                    name: name.to_owned(),
                    weight,
                    probability: weight as f64 / total,
                    lb: config.map(|c| c.lb.clone()),
                    thresholds: config.map(|c| c.thresholds),
                    #[cfg(feature = "breaker")]
                    breaker: runtime.and_then(|r| r.breaker()).map(|b| b.state()),
                    mtls: config.is_some_and(|c| c.requires_mtls()),
                    outlier_detection: config.is_some_and(|c| c.outlier_detection.is_some()),
                    endpoints,
                }
            })
            .collect();
        let runtime = routing.route((index, route_index));
        Ok(Explanation {
            version: snapshot.version(),
            service: service.to_owned(),
            route: route_index,
            timeout: route.timeout(),
            retry: route.retry().cloned(),
            retry_stats: runtime.and_then(|r| r.retry.as_ref()).map(|r| r.stats()),
            fault: route.fault().cloned(),
            debug_header: found.debug_header(),
            split,
        })
    }
}

impl Mesh {
    /// As [`Mesh::explain`], once the mesh knows `service`: with a control
    /// plane, waits for the service's configuration (at most the initial
    /// fetch timeout, as a call would), then explains. Without one, the
    /// same as [`Mesh::explain`].
    pub async fn explain_when_known<B>(
        &self,
        service: &str,
        request: &Request<B>,
    ) -> Result<Explanation, RouteError> {
        #[cfg(feature = "xds")]
        if let Some(discovery) = &self.shared.discovery {
            let shared = self.shared.clone();
            let known = || shared.snapshot().service(service).is_some();
            if let Err(reason) = discovery.settled(service, known).await {
                return Err(RouteError::Undiscovered {
                    service: service.to_owned(),
                    reason,
                });
            }
        }
        self.explain(service, request)
    }
}

fn explain_endpoint(view: &EndpointView<'_>) -> EndpointExplanation {
    EndpointExplanation {
        address: view.endpoint.address,
        weight: view.endpoint.weight,
        priority: view.endpoint.priority,
        locality: view.endpoint.locality.clone(),
        health: view.endpoint.health,
        ejected: view.ejected,
        in_rotation: view.in_rotation,
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "service {} (config version {}): routes[{}]",
            self.service, self.version, self.route
        )?;
        match self.timeout {
            Some(t) => writeln!(f, "  timeout: {t:?}")?,
            None => writeln!(f, "  timeout: none")?,
        }
        match &self.retry {
            Some(r) => {
                write!(
                    f,
                    "  retry: up to {} attempts, budget {}% + {}/s",
                    r.max_attempts,
                    r.budget.ratio * 100.0,
                    r.budget.min_per_second
                )?;
                if let Some(per_try) = r.per_try_timeout {
                    write!(f, ", per try {per_try:?}")?;
                }
                if let Some(hedge) = &r.hedge {
                    write!(f, ", hedged after {:?}", hedge.delay)?;
                }
                if let Some(s) = &self.retry_stats {
                    write!(
                        f,
                        " (so far: {} retries, {} hedges, {} refused by the budget)",
                        s.retries, s.hedges, s.budget_exhausted
                    )?;
                }
                writeln!(f)?;
            }
            None => writeln!(f, "  retry: none")?,
        }
        match &self.fault {
            Some(fault) => writeln!(f, "  faults: {fault:?}")?,
            None => writeln!(f, "  faults: none")?,
        }
        for c in &self.split {
            write!(
                f,
                "  cluster {}: weight {}, {:.1}%",
                c.name,
                c.weight,
                c.probability * 100.0
            )?;
            if let Some(lb) = &c.lb {
                write!(f, ", lb {lb:?}")?;
            }
            if let Some(t) = &c.thresholds {
                write!(
                    f,
                    ", max_requests {} max_pending {} max_retries {}",
                    t.max_requests, t.max_pending, t.max_retries
                )?;
            }
            #[cfg(feature = "breaker")]
            if let Some(state) = c.breaker {
                write!(f, ", breaker {state:?}")?;
            }
            if c.mtls {
                f.write_str(", mTLS")?;
            }
            if c.outlier_detection {
                f.write_str(", outlier detection")?;
            }
            writeln!(f)?;
            for e in &c.endpoints {
                write!(
                    f,
                    "    {} weight {} priority {} {:?}",
                    e.address, e.weight, e.priority, e.health
                )?;
                if !e.locality.zone.is_empty() || !e.locality.region.is_empty() {
                    write!(f, " {}/{}", e.locality.region, e.locality.zone)?;
                }
                if e.ejected {
                    f.write_str(" EJECTED")?;
                }
                f.write_str(if e.in_rotation {
                    " in rotation"
                } else {
                    " out of rotation"
                })?;
                writeln!(f)?;
            }
        }
        Ok(())
    }
}
