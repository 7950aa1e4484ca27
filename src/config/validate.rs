//! Validation of each part of a [`MeshConfig`](super::MeshConfig), with the
//! path of every field it rejects.

use super::snapshot::{Cluster, Endpoint, PathMatcher, Route, ValueMatcher};
use super::{
    ClusterConfig, EndpointConfig, FaultConfig, HeaderMatch, LbPolicy, Locality, PathMatch,
    RouteConfig,
};
use crate::error::ConfigError;
use http::{HeaderName, Method};
use regex::Regex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The path of a field, built as validation descends.
#[derive(Clone, Debug)]
pub(super) struct Fields(String);

impl Fields {
    pub(super) fn root(name: &str) -> Self {
        Self(name.to_owned())
    }

    pub(super) fn field(&self, name: &str) -> Self {
        Self(format!("{}.{name}", self.0))
    }

    pub(super) fn key(&self, key: &str) -> Self {
        self.field(key)
    }

    pub(super) fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub(super) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.0.clone(), message)
    }

    /// Service and cluster names: 1 to 253 characters of `[A-Za-z0-9._:-]`
    /// (a colon for xDS names such as `reviews:8080`).
    pub(super) fn check_name(&self, name: &str) -> Result<(), ConfigError> {
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        if ok {
            Ok(())
        } else {
            Err(self
                .error("names are 1 to 253 characters of letters, digits, '.', '_', ':' and '-'"))
        }
    }
}

pub(super) const MAX_WEIGHT: u32 = 1_000_000;

/// The longest reason a failing route gives (Envoy's direct responses take
/// 4 KiB).
const MAX_FAIL_REASON: usize = 1024;

/// The largest `min_ring_size`: a ring of up to twice that many points
/// (16 bytes each) per cluster, 2 MiB; gRPC caps its rings at 4,096 by
/// default.
pub(crate) const MAX_RING_SIZE: u32 = 65_536;

fn regex(at: &Fields, pattern: &str) -> Result<Regex, ConfigError> {
    // Anchored: a route's regex matches the whole path or value.
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| at.error(format!("invalid regex: {e}")))
}

fn header_name(at: &Fields, name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| at.error(format!("`{name}` is not a valid header name")))
}

pub(super) fn checked_route(
    at: &Fields,
    route: &RouteConfig,
    clusters: &HashMap<String, Arc<Cluster>>,
) -> Result<Route, ConfigError> {
    let m = &route.matcher;
    let matcher = at.field("match");
    let method = match &m.method {
        Some(method) => Some(Method::from_bytes(method.as_bytes()).map_err(|_| {
            matcher
                .field("method")
                .error(format!("`{method}` is not a method"))
        })?),
        None => None,
    };
    let path = match &m.path {
        None => None,
        Some(path) => Some(checked_path(&matcher.field("path"), path)?),
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| checked_header(&matcher.field("headers").index(i), h))
        .collect::<Result<_, _>>()?;

    let fail = match &route.fail {
        Some(reason) if reason.trim().is_empty() => {
            return Err(at.field("fail").error("must give a reason"));
        }
        Some(reason) if reason.len() > MAX_FAIL_REASON || reason.chars().any(char::is_control) => {
            return Err(at.field("fail").error(format!(
                "must be at most {MAX_FAIL_REASON} bytes of text without control characters"
            )));
        }
        Some(_) if !route.split.is_empty() => {
            return Err(at
                .field("split")
                .error("must be empty on a route that fails its requests (`fail`)"));
        }
        Some(reason) => Some(Arc::from(reason.as_str())),
        None if route.split.is_empty() => {
            return Err(at.field("split").error("must name at least one cluster"));
        }
        None => None,
    };
    let mut split = Vec::with_capacity(route.split.len());
    let mut total = 0u64;
    for (i, share) in route.split.iter().enumerate() {
        let at = at.field("split").index(i);
        if !clusters.contains_key(&share.cluster) {
            return Err(at
                .field("cluster")
                .error(format!("unknown cluster `{}`", share.cluster)));
        }
        if share.weight > MAX_WEIGHT {
            return Err(at
                .field("weight")
                .error(format!("must be at most {MAX_WEIGHT}")));
        }
        total += u64::from(share.weight);
        split.push((Arc::from(share.cluster.as_str()), total));
    }
    if total == 0 && fail.is_none() {
        return Err(at
            .field("split")
            .error("weights must add up to more than 0"));
    }
    if let Some(timeout) = route.timeout {
        positive_duration(&at.field("timeout"), timeout)?;
    }
    if let Some(retry) = &route.retry {
        retry.validate().map_err(|e| within(e, at))?;
    }
    let hash_header = match &route.hash_header {
        Some(name) => Some(header_name(&at.field("hash_header"), name)?),
        None => None,
    };
    if let Some(fault) = &route.fault {
        checked_fault(&at.field("fault"), fault)?;
    }
    if let Some(name) = &route.classifier {
        check_classifier(&at.field("classifier"), name)?;
    }
    Ok(Route {
        path,
        method,
        headers,
        split,
        timeout: route.timeout,
        retry: route.retry.clone(),
        hash_header,
        fault: route.fault.clone(),
        fail,
        classifier: route.classifier.as_deref().map(Arc::from),
    })
}

/// A classifier's name; whether one is registered under it is the mesh's
/// check (see [`Classifiers::check`](crate::classify::Classifiers::check)).
fn check_classifier(at: &Fields, name: &str) -> Result<(), ConfigError> {
    crate::classify::check_name(name).map_err(|message| at.error(message))
}

/// A duration greater than zero and at most
/// [`MAX_DURATION`](crate::bounds::MAX_DURATION).
fn positive_duration(at: &Fields, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(at.error("must be greater than zero"));
    }
    bounded_duration(at, value)
}

/// A duration of at most [`MAX_DURATION`](crate::bounds::MAX_DURATION),
/// so that no clock arithmetic on it can overflow.
fn bounded_duration(at: &Fields, value: Duration) -> Result<(), ConfigError> {
    if value > crate::bounds::MAX_DURATION {
        return Err(at.error("must be at most 365 days"));
    }
    Ok(())
}

fn checked_fault(at: &Fields, fault: &FaultConfig) -> Result<(), ConfigError> {
    let percent = |at: Fields, p: f64| {
        if (0.0..=100.0).contains(&p) {
            Ok(())
        } else {
            Err(at.error("must be between 0 and 100"))
        }
    };
    if let Some(delay) = &fault.delay {
        percent(at.field("delay").field("percent"), delay.percent)?;
        bounded_duration(&at.field("delay").field("fixed"), delay.fixed)?;
    }
    if let Some(abort) = &fault.abort {
        let at = at.field("abort");
        percent(at.field("percent"), abort.percent)?;
        match (abort.http_status, &abort.grpc_status) {
            (Some(status), None) if !(200..=599).contains(&status) => {
                return Err(at.field("http_status").error("must be between 200 and 599"));
            }
            (None, Some(name)) if crate::grpc::Code::from_name(name).is_none() => {
                return Err(at
                    .field("grpc_status")
                    .error(format!("`{name}` is not a gRPC status code name")));
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(at.error("set exactly one of `http_status` and `grpc_status`"));
            }
        }
    }
    Ok(())
}

pub(super) fn checked_path(at: &Fields, path: &PathMatch) -> Result<PathMatcher, ConfigError> {
    match (&path.exact, &path.prefix, &path.regex) {
        (Some(p), None, None) | (None, Some(p), None) if !p.starts_with('/') => {
            Err(at.error("must start with '/'"))
        }
        (Some(p), None, None) => Ok(PathMatcher::Exact(p.clone())),
        (None, Some(p), None) => Ok(PathMatcher::Prefix(p.clone())),
        (None, None, Some(r)) => Ok(PathMatcher::Regex(regex(&at.field("regex"), r)?)),
        _ => Err(at.error("set exactly one of exact, prefix and regex")),
    }
}

fn within(error: ConfigError, at: &Fields) -> ConfigError {
    error.within(&at.0)
}

pub(super) fn checked_header(
    at: &Fields,
    h: &HeaderMatch,
) -> Result<(HeaderName, ValueMatcher), ConfigError> {
    let name = header_name(&at.field("name"), &h.name)?;
    let set = [
        h.exact.is_some(),
        h.prefix.is_some(),
        h.regex.is_some(),
        h.present.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(at.error("set exactly one of exact, prefix, regex and present"));
    }
    let matcher = match (&h.exact, &h.prefix, &h.regex, h.present) {
        (Some(v), ..) => ValueMatcher::Exact(v.clone()),
        (_, Some(v), ..) => ValueMatcher::Prefix(v.clone()),
        (_, _, Some(r), _) => ValueMatcher::Regex(regex(&at.field("regex"), r)?),
        (.., present) => ValueMatcher::Present(present.unwrap_or(true)),
    };
    Ok((name, matcher))
}

pub(super) fn checked_cluster(
    at: &Fields,
    name: &str,
    mut cluster: ClusterConfig,
) -> Result<Cluster, ConfigError> {
    at.check_name(name)?;
    match &cluster.lb {
        LbPolicy::RingHash {
            header,
            min_ring_size,
        } => {
            check_hash_header(&at.field("lb"), header.as_deref())?;
            if !(1..=MAX_RING_SIZE).contains(min_ring_size) {
                return Err(at
                    .field("lb.min_ring_size")
                    .error(format!("must be between 1 and {MAX_RING_SIZE}")));
            }
        }
        LbPolicy::Maglev { header } => check_hash_header(&at.field("lb"), header.as_deref())?,
        _ => {}
    }
    let locality = &cluster.locality_lb;
    for (field, value) in [
        (
            "failover_threshold_percent",
            locality.failover_threshold_percent,
        ),
        ("panic_threshold_percent", locality.panic_threshold_percent),
    ] {
        if value > 100 {
            return Err(at
                .field("locality_lb")
                .field(field)
                .error("must be at most 100"));
        }
    }
    let t = &cluster.thresholds;
    for (field, value) in [
        ("max_requests", t.max_requests),
        ("max_pending", t.max_pending),
        ("max_retries", t.max_retries),
    ] {
        if value == 0 {
            return Err(at
                .field("thresholds")
                .field(field)
                .error("must be at least 1"));
        }
    }
    if let Some(od) = &cluster.outlier_detection {
        check_outlier(&at.field("outlier_detection"), od)?;
    }
    if let Some(breaker) = &cluster.breaker {
        // The breaker's own check names `breaker.<field>`.
        breaker.validate().map_err(|e| within(e, at))?;
    }
    if let Some(name) = &cluster.classifier {
        check_classifier(&at.field("classifier"), name)?;
    }
    for (i, identity) in cluster.identities.iter().enumerate() {
        if !identity.starts_with("spiffe://") || identity.len() <= "spiffe://".len() {
            return Err(at
                .field("identities")
                .index(i)
                .error("must be a SPIFFE ID (spiffe://trust-domain/path)"));
        }
    }
    let given = std::mem::take(&mut cluster.endpoints);
    let mut endpoints = Vec::with_capacity(given.len());
    let mut seen = crate::addr_hash::addr_map(given.len());
    let mut localities = Localities::default();
    for (i, e) in given.into_iter().enumerate() {
        let at = at.field("endpoints").index(i);
        let endpoint = checked_endpoint(&at, e, &mut localities)?;
        if let Some(first) = seen.insert(endpoint.address, i) {
            return Err(at
                .field("address")
                .error(format!("duplicate of endpoints[{first}]")));
        }
        endpoints.push(endpoint);
    }
    // The endpoints live once, parsed, in the cluster's list.
    Ok(Cluster::new(name.to_owned(), cluster, endpoints))
}

/// Parses one endpoint, taking its strings rather than copying them.
pub(super) fn checked_endpoint(
    at: &Fields,
    e: EndpointConfig,
    localities: &mut Localities,
) -> Result<Endpoint, ConfigError> {
    let address = checked_address(&at.field("address"), &e.address)?;
    if !(1..=MAX_WEIGHT).contains(&e.weight) {
        return Err(at
            .field("weight")
            .error(format!("must be between 1 and {MAX_WEIGHT}")));
    }
    Ok(Endpoint {
        address,
        weight: e.weight,
        locality: localities.intern(e.locality),
        priority: e.priority,
        health: e.health,
        metadata: e.metadata,
    })
}

/// One shared copy of each locality: a cluster's endpoints sit in a few.
#[derive(Default)]
pub(super) struct Localities(HashMap<Locality, Arc<Locality>>);

impl Localities {
    pub(super) fn intern(&mut self, locality: Locality) -> Arc<Locality> {
        if let Some(shared) = self.0.get(&locality) {
            return shared.clone();
        }
        let shared = Arc::new(locality.clone());
        self.0.insert(locality, shared.clone());
        shared
    }
}

pub(super) fn checked_address(at: &Fields, address: &str) -> Result<SocketAddr, ConfigError> {
    let parsed: SocketAddr = address
        .parse()
        .map_err(|_| at.error(format!("`{address}` is not an ip:port")))?;
    // Nothing listens on port 0, and the xDS clients refuse it.
    if parsed.port() == 0 {
        return Err(at.error("the port must be between 1 and 65535"));
    }
    Ok(parsed)
}

fn check_hash_header(at: &Fields, header: Option<&str>) -> Result<(), ConfigError> {
    match header {
        Some(name) => header_name(&at.field("header"), name).map(drop),
        None => Ok(()),
    }
}

fn check_outlier(at: &Fields, od: &super::OutlierDetectionConfig) -> Result<(), ConfigError> {
    for (field, value) in [
        ("consecutive_5xx", od.consecutive_5xx),
        (
            "consecutive_gateway_failure",
            od.consecutive_gateway_failure,
        ),
        (
            "consecutive_local_origin_failure",
            od.consecutive_local_origin_failure,
        ),
    ] {
        if value == Some(0) {
            return Err(at.field(field).error("must be at least 1 (or left out)"));
        }
    }
    for (field, value) in [
        ("interval", od.interval),
        ("base_ejection_time", od.base_ejection_time),
    ] {
        positive_duration(&at.field(field), value)?;
    }
    bounded_duration(&at.field("max_ejection_time"), od.max_ejection_time)?;
    if od.max_ejection_time < od.base_ejection_time {
        return Err(at
            .field("max_ejection_time")
            .error("must not be less than base_ejection_time"));
    }
    if od.max_ejection_percent > 100 {
        return Err(at
            .field("max_ejection_percent")
            .error("must be at most 100"));
    }
    if let Some(sr) = &od.success_rate
        && !(sr.stdev_factor > 0.0 && sr.stdev_factor.is_finite())
    {
        return Err(at
            .field("success_rate.stdev_factor")
            .error("must be a positive number"));
    }
    if let Some(fp) = &od.failure_percentage
        && fp.threshold > 100
    {
        return Err(at
            .field("failure_percentage.threshold")
            .error("must be at most 100"));
    }
    Ok(())
}
