use super::FaultConfig;
use crate::retry::RetryConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A service: its routes, tried in order (the first that matches wins),
/// and its inbound half, for the processes that serve it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Routes in order of precedence. At least one, unless the service has
    /// an `inbound` block (a process serves it without calling it).
    pub routes: Vec<RouteConfig>,
    /// What a process serving the service enforces on its requests.
    /// Default: none (the server's own defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound: Option<super::InboundConfig>,
    /// Whether a caller may ask, with the request header `sinew-debug: 1`,
    /// for the mesh's decision in the response header `sinew-decision`
    /// (see [`DecisionReport::short_form`](crate::telemetry::report::DecisionReport::short_form)).
    /// Default: false: the header reveals endpoints and clusters. Set in
    /// the mesh file only; discovery (xDS) leaves it off.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub debug_header: bool,
}

/// One route: which requests it takes, where it sends them, and how.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Which requests the route takes. Default: all of them.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Clusters and their weights. At least one, with a positive total.
    pub split: Vec<WeightedCluster>,
    /// Overall timeout of a request on this route. Default: none.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Retry (or hedging) policy. Default: none.
    pub retry: Option<RetryConfig>,
    /// For clusters with a consistent-hashing policy: the request header
    /// whose value picks the endpoint for this route's requests, taking
    /// precedence over the cluster's own `header`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_header: Option<String>,
    /// Faults injected into this route's requests. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultConfig>,
    /// The name of the outcome classifier (registered by the application,
    /// see [`Classifiers`](crate::classify::Classifiers)) that decides
    /// what the route's retry or hedging policy retries. Default: none
    /// (the classifier named `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classifier: Option<String>,
    /// When set, the route takes the requests it matches and fails each at
    /// once, unsent, with [`RouteError::RouteFails`](crate::mesh::RouteError)
    /// and this reason (gRPC `UNAVAILABLE`). Discovery sets it on a route
    /// whose action Sinew cannot carry out (a redirect, a direct response),
    /// as gRPC does (gRFC A28), so that the other routes stay in force. A
    /// failing route names no cluster: `split` stays empty. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail: Option<String>,
}

/// What a request must look like for a route to take it. Every condition
/// that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteMatch {
    /// The request path. Default: any.
    pub path: Option<PathMatch>,
    /// The request method, e.g. `GET`. Default: any.
    pub method: Option<String>,
    /// Headers that must match.
    pub headers: Vec<HeaderMatch>,
}

/// How a path matches: set exactly one of `exact`, `prefix` and `regex`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathMatch {
    /// The path equals this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The path starts with this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The whole path matches this regular expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl PathMatch {
    /// Paths equal to `path`.
    pub fn exact(path: impl Into<String>) -> Self {
        Self {
            exact: Some(path.into()),
            ..Self::default()
        }
    }

    /// Paths starting with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: Some(prefix.into()),
            ..Self::default()
        }
    }

    /// Paths matching `regex` whole.
    pub fn regex(regex: impl Into<String>) -> Self {
        Self {
            regex: Some(regex.into()),
            ..Self::default()
        }
    }
}

/// A header condition: set exactly one of `exact`, `prefix`, `regex` and
/// `present`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderMatch {
    /// The header name.
    pub name: String,
    /// The value equals this.
    pub exact: Option<String>,
    /// The value starts with this.
    pub prefix: Option<String>,
    /// The whole value matches this regular expression.
    pub regex: Option<String>,
    /// The header is present (`true`) or absent (`false`).
    pub present: Option<bool>,
}

/// A share of a route's traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    /// The cluster's name.
    pub cluster: String,
    /// Its weight among the route's clusters. Default: 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}
