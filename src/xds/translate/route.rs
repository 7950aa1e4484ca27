use super::super::resource::{RouteTable, VirtualHost};
use super::{Invalid, duration, fault, within};
use crate::config::{HeaderMatch, PathMatch, RouteConfig, RouteMatch, WeightedCluster};
use crate::retry::{HedgeConfig, RetryConfig, RetryOn};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, RetryPolicy, RouteConfiguration,
    header_matcher::HeaderMatchSpecifier,
    route,
    route_action::{ClusterSpecifier, HashPolicy, hash_policy::PolicySpecifier},
    route_match::PathSpecifier,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use std::time::Duration;

/// A RouteConfiguration: virtual hosts with their domains and routes.
pub(crate) fn route_table(config: RouteConfiguration) -> Result<RouteTable, Invalid> {
    let mut virtual_hosts = Vec::with_capacity(config.virtual_hosts.len());
    for (i, vh) in config.virtual_hosts.into_iter().enumerate() {
        let at = format!("virtual_hosts[{i}]");
        if vh.domains.is_empty() {
            return Err(format!("{at}.domains: must not be empty"));
        }
        let vh_retry = vh.retry_policy;
        let vh_fault = fault::override_in(&vh.typed_per_filter_config).map_err(within(&at))?;
        let mut routes = Vec::with_capacity(vh.routes.len());
        for (j, r) in vh.routes.into_iter().enumerate() {
            let at = format!("{at}.routes[{j}]");
            let mut route =
                one_route(r, vh_retry.as_ref(), &config.name, &at).map_err(within(&at))?;
            route.fault = route.fault.or_else(|| vh_fault.clone());
            routes.push(route);
        }
        virtual_hosts.push(VirtualHost {
            domains: vh.domains,
            routes,
        });
    }
    Ok(RouteTable { virtual_hosts })
}

fn one_route(
    r: envoy_types::pb::envoy::config::route::v3::Route,
    vh_retry: Option<&RetryPolicy>,
    table: &str,
    at: &str,
) -> Result<RouteConfig, Invalid> {
    let fault = fault::override_in(&r.typed_per_filter_config)?;
    let classifier = super::metadata::classifier(super::metadata::fields(r.metadata.as_ref()))?;
    let m = r.r#match.ok_or("match: missing")?;
    let insensitive = m.case_sensitive.as_ref().is_some_and(|c| !c.value);
    if m.runtime_fraction.is_some() {
        return Err("match.runtime_fraction: not supported".to_owned());
    }
    if !m.query_parameters.is_empty() {
        return Err("match.query_parameters: not supported".to_owned());
    }
    let path = match m.path_specifier {
        Some(PathSpecifier::Prefix(p)) if insensitive => {
            Some(regex(&format!("(?i){}.*", escape(&p))))
        }
        Some(PathSpecifier::Prefix(p)) if p.is_empty() || p == "/" => None,
        Some(PathSpecifier::Prefix(p)) => Some(PathMatch {
            prefix: Some(p),
            ..PathMatch::default()
        }),
        Some(PathSpecifier::Path(p)) if insensitive => Some(regex(&format!("(?i){}", escape(&p)))),
        Some(PathSpecifier::Path(p)) => Some(PathMatch {
            exact: Some(p),
            ..PathMatch::default()
        }),
        Some(PathSpecifier::SafeRegex(r)) => Some(regex(&r.regex)),
        Some(PathSpecifier::PathSeparatedPrefix(p)) => {
            Some(regex(&format!("{}(/.*)?", escape(&p))))
        }
        Some(_) => return Err("match.path_specifier: not supported".to_owned()),
        None => return Err("match.path_specifier: missing".to_owned()),
    };
    let mut method = None;
    let mut headers = Vec::with_capacity(m.headers.len());
    for (i, h) in m.headers.into_iter().enumerate() {
        let at = format!("match.headers[{i}]");
        match header(h).map_err(within(&at))? {
            Header::Method(name) => method = Some(name),
            Header::Other(matcher) => headers.push(matcher),
        }
    }
    let matcher = RouteMatch {
        path,
        method,
        headers,
    };
    let action = match r.action {
        Some(route::Action::Route(action)) => action,
        other => {
            // As gRPC does (gRFC A28): the resource stands, and only the
            // requests this route takes fail.
            let what = match other {
                Some(route::Action::Redirect(_)) => "`redirect`",
                Some(route::Action::DirectResponse(_)) => "`direct_response`",
                Some(route::Action::FilterAction(_)) => "`filter_action`",
                Some(route::Action::NonForwardingAction(_)) => "`non_forwarding_action`",
                Some(route::Action::Route(_)) | None => "a missing action",
            };
            // A direct response's text body is the reason (as Sinew's
            // control plane serves a route that fails its requests).
            let said = match &other {
                Some(route::Action::DirectResponse(d)) => match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
                    Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(text))
                        if !text.trim().is_empty() => Some(text.clone()),
                    _ => None,
                },
                _ => None,
            };
            return Ok(RouteConfig {
                matcher,
                fail: Some(said.unwrap_or_else(|| format!(
                    "RouteConfiguration `{table}` {at}.action: {what} is not supported (only `route`)"
                ))),
                classifier,
                ..RouteConfig::default()
            });
        }
    };
    let split = match action.cluster_specifier {
        Some(ClusterSpecifier::Cluster(name)) if !name.is_empty() => vec![WeightedCluster {
            cluster: name,
            weight: 1,
        }],
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            let mut split = Vec::with_capacity(w.clusters.len());
            for (i, c) in w.clusters.into_iter().enumerate() {
                let weight = c.weight.map_or(0, |w| w.value);
                if c.name.is_empty() {
                    return Err(format!(
                        "route.weighted_clusters.clusters[{i}].name: must not be empty"
                    ));
                }
                // gRPC leaves zero-weight clusters out.
                if weight > 0 {
                    split.push(WeightedCluster {
                        cluster: c.name,
                        weight,
                    });
                }
            }
            if split.is_empty() {
                return Err(
                    "route.weighted_clusters: no cluster has a weight above zero".to_owned(),
                );
            }
            split
        }
        _ => {
            return Err(
                "route.cluster_specifier: `cluster` or `weighted_clusters` required".to_owned(),
            );
        }
    };
    // As gRPC does: max_stream_duration first, then the route timeout; an
    // unset or zero one means none.
    let timeout = match action
        .max_stream_duration
        .as_ref()
        .and_then(|m| m.max_stream_duration.as_ref())
    {
        Some(d) => Some(duration(
            "route.max_stream_duration.max_stream_duration",
            d,
        )?),
        None => action
            .timeout
            .as_ref()
            .map(|d| duration("route.timeout", d))
            .transpose()?,
    }
    .filter(|d| !d.is_zero());
    let retry = match action.retry_policy.as_ref().or(vh_retry) {
        Some(policy) => {
            retry(policy, action.hedge_policy.as_ref()).map_err(within("route.retry_policy"))?
        }
        None => None,
    };
    let hash_header = hash_header(&action.hash_policy)?;
    Ok(RouteConfig {
        matcher,
        split,
        timeout,
        retry,
        hash_header,
        fault,
        fail: None,
        classifier,
    })
}

enum Header {
    Method(String),
    Other(HeaderMatch),
}

// The older header matchers are deprecated in Envoy's API, and control
// planes still send them.
#[allow(deprecated)]
fn header(h: HeaderMatcher) -> Result<Header, Invalid> {
    if h.invert_match {
        return Err("invert_match: not supported".to_owned());
    }
    let mut matcher = HeaderMatch {
        name: h.name.clone(),
        exact: None,
        prefix: None,
        regex: None,
        present: None,
    };
    match h.header_match_specifier {
        Some(HeaderMatchSpecifier::ExactMatch(v)) => matcher.exact = Some(v),
        Some(HeaderMatchSpecifier::PrefixMatch(v)) => matcher.prefix = Some(v),
        Some(HeaderMatchSpecifier::SuffixMatch(v)) => {
            matcher.regex = Some(format!(".*{}", escape(&v)))
        }
        Some(HeaderMatchSpecifier::ContainsMatch(v)) => {
            matcher.regex = Some(format!(".*{}.*", escape(&v)))
        }
        Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => matcher.regex = Some(r.regex),
        Some(HeaderMatchSpecifier::PresentMatch(p)) => matcher.present = Some(p),
        Some(HeaderMatchSpecifier::StringMatch(s)) => string_match(&mut matcher, s)?,
        Some(_) => return Err("header_match_specifier: not supported".to_owned()),
        None => matcher.present = Some(true),
    }
    if h.name == ":method" {
        return match matcher.exact {
            Some(method) => Ok(Header::Method(method)),
            None => Err("name: `:method` is matched exactly or not at all".to_owned()),
        };
    }
    if h.name.starts_with(':') {
        return Err(format!("name: pseudo-header `{}` is not supported", h.name));
    }
    Ok(Header::Other(matcher))
}

fn string_match(matcher: &mut HeaderMatch, s: StringMatcher) -> Result<(), Invalid> {
    let case = if s.ignore_case { "(?i)" } else { "" };
    let (exact, prefix, regex) = match s.match_pattern {
        Some(MatchPattern::Exact(v)) if s.ignore_case => {
            (None, None, Some(format!("{case}{}", escape(&v))))
        }
        Some(MatchPattern::Exact(v)) => (Some(v), None, None),
        Some(MatchPattern::Prefix(v)) if s.ignore_case => {
            (None, None, Some(format!("{case}{}.*", escape(&v))))
        }
        Some(MatchPattern::Prefix(v)) => (None, Some(v), None),
        Some(MatchPattern::Suffix(v)) => (None, None, Some(format!("{case}.*{}", escape(&v)))),
        Some(MatchPattern::Contains(v)) => (None, None, Some(format!("{case}.*{}.*", escape(&v)))),
        Some(MatchPattern::SafeRegex(r)) => (None, None, Some(r.regex)),
        _ => return Err("string_match: not supported".to_owned()),
    };
    matcher.exact = exact;
    matcher.prefix = prefix;
    matcher.regex = regex;
    Ok(())
}

/// The header a route's requests are hashed on: the first header policy
/// (gRFC A42). Policies on other request properties (cookies, the caller's
/// address, query parameters, filter state) do not apply to a client and
/// are passed over, as gRPC does.
fn hash_header(policies: &[HashPolicy]) -> Result<Option<String>, Invalid> {
    for (i, policy) in policies.iter().enumerate() {
        if let Some(PolicySpecifier::Header(h)) = &policy.policy_specifier {
            if h.regex_rewrite.is_some() {
                return Err(format!(
                    "route.hash_policy[{i}].header.regex_rewrite: not supported"
                ));
            }
            if h.header_name.is_empty() {
                return Err(format!(
                    "route.hash_policy[{i}].header.header_name: must not be empty"
                ));
            }
            return Ok(Some(h.header_name.to_ascii_lowercase()));
        }
    }
    Ok(None)
}

/// Envoy's retry policy in the retry layer's terms: up to `num_retries`
/// more attempts (default: one) on the `retry_on` conditions;
/// `retry_back_off` (default 25 ms, capped at ten times that); a per-try
/// timeout, or hedging on it when the hedge policy asks. A policy none of
/// whose conditions Sinew knows is no policy, as in gRPC.
fn retry(
    policy: &RetryPolicy,
    hedge: Option<&envoy_types::pb::envoy::config::route::v3::HedgePolicy>,
) -> Result<Option<RetryConfig>, Invalid> {
    let Some(retry_on) = retry_on(policy)? else {
        return Ok(None);
    };
    let mut config = RetryConfig {
        retry_on: Some(retry_on),
        ..RetryConfig::default()
    };
    let retries = policy.num_retries.as_ref().map_or(1, |n| n.value);
    config.max_attempts = retries.saturating_add(1).min(10);
    if let Some(backoff) = &policy.retry_back_off {
        let base = match &backoff.base_interval {
            Some(d) => duration("retry_back_off.base_interval", d)?,
            None => Duration::from_millis(25),
        };
        let max = match &backoff.max_interval {
            Some(d) => duration("retry_back_off.max_interval", d)?,
            None => base.saturating_mul(10).min(crate::bounds::MAX_DURATION),
        };
        if base.is_zero() {
            return Err("retry_back_off.base_interval: must be greater than zero".to_owned());
        }
        config.backoff.base = base;
        config.backoff.max = max.max(base);
    }
    let per_try = policy
        .per_try_timeout
        .as_ref()
        .map(|d| duration("per_try_timeout", d))
        .transpose()?
        .filter(|d| !d.is_zero());
    match (hedge, per_try) {
        (Some(h), Some(delay)) if h.hedge_on_per_try_timeout && config.max_attempts >= 2 => {
            config.hedge = Some(HedgeConfig {
                delay,
                max_attempts: config.max_attempts,
            });
        }
        (_, per_try) => config.per_try_timeout = per_try,
    }
    Ok(Some(config))
}

/// Envoy's `retry_on` conditions (and `retriable_status_codes`) as a
/// [`RetryOn`]; `None` when it names none Sinew knows. `connect-failure`,
/// `refused-stream` and `reset-before-request` are known and add nothing:
/// failures that prove a request unprocessed are always retried.
fn retry_on(policy: &RetryPolicy) -> Result<Option<RetryOn>, Invalid> {
    let mut on = RetryOn::default();
    let mut known = false;
    for condition in policy.retry_on.split(',').map(str::trim) {
        let mut statuses = |s: &[u16]| on.statuses.extend_from_slice(s);
        match condition {
            "5xx" => {
                statuses(&(500..=599).collect::<Vec<_>>());
                on.errors = true;
            }
            "gateway-error" => statuses(&[502, 503, 504]),
            "retriable-4xx" => statuses(&[409]),
            "reset" => on.errors = true,
            "retriable-status-codes" => {
                for (i, &code) in policy.retriable_status_codes.iter().enumerate() {
                    match u16::try_from(code) {
                        Ok(code) if (400..=599).contains(&code) => on.statuses.push(code),
                        _ => {
                            return Err(format!(
                                "retriable_status_codes[{i}]: {code} is not an HTTP status from 400 to 599"
                            ));
                        }
                    }
                }
            }
            "connect-failure" | "refused-stream" | "reset-before-request" => {}
            "cancelled" | "deadline-exceeded" | "internal" | "resource-exhausted"
            | "unavailable" => on.grpc.push(condition.to_owned()),
            _ => continue,
        }
        known = true;
    }
    on.statuses.sort_unstable();
    on.statuses.dedup();
    Ok(known.then_some(on))
}

fn regex(pattern: &str) -> PathMatch {
    PathMatch {
        regex: Some(pattern.to_owned()),
        ..PathMatch::default()
    }
}

fn escape(text: &str) -> String {
    regex::escape(text)
}
