//! Reading an OTLP metrics export into edge deltas, refusing what is
//! malformed with the field at fault (`INVALID_ARGUMENT`), all or
//! nothing: an export is applied only once every part of it was read.
//! Metrics of other names are ignored, so that a workload may send its
//! edges beside other metrics.

use super::window::{Delta, Key};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, NumberDataPoint, metric::Data, number_data_point,
};
use sinew::telemetry::edges::{Direction, LATENCY_BOUNDS_MICROS, LatencyHistogram};
use sinew::telemetry::otlp_names as names;
use std::collections::BTreeMap;
use tonic::Status;

/// The edges one process reported.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Its `service.name`.
    pub(crate) service: String,
    /// Its `service.instance.id` (empty when not given).
    pub(crate) instance: String,
    /// Where `service.name` was read from, for error messages.
    pub(crate) service_field: String,
    pub(crate) edges: BTreeMap<Key, Delta>,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

/// A service name as the mesh spells one: 1 to 253 characters of
/// letters, digits, `.`, `_`, `:`, `-` (a colon for xDS names such as
/// `reviews:8080`).
fn name<'a>(attributes: &'a [KeyValue], key: &str, field: &str) -> Result<&'a str, Status> {
    let field = format!("{field}.attributes[{key}]");
    let Some(value) = string_attribute(attributes, key) else {
        return Err(invalid(&field, "missing, or not a string"));
    };
    let valid = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if !valid {
        return Err(invalid(
            &field,
            format!(
                "`{}` is not a service name (1 to 253 letters, digits, `.`, `_`, `:`, `-`)",
                crate::limits::truncate(value, 64)
            ),
        ));
    }
    Ok(value)
}

fn key(attributes: &[KeyValue], field: &str) -> Result<Key, Status> {
    let direction = match string_attribute(attributes, names::DIRECTION) {
        Some("outbound") => Direction::Outbound,
        Some("inbound") => Direction::Inbound,
        _ => {
            return Err(invalid(
                &format!("{field}.attributes[{}]", names::DIRECTION),
                "must be `outbound` or `inbound`",
            ));
        }
    };
    Ok(Key {
        source: name(attributes, names::SOURCE, field)?.to_owned(),
        destination: name(attributes, names::DESTINATION, field)?.to_owned(),
        direction,
    })
}

fn delta_only(temporality: i32, field: &str) -> Result<(), Status> {
    if temporality != AggregationTemporality::Delta as i32 {
        return Err(invalid(
            &format!("{field}.aggregation_temporality"),
            "must be DELTA: the control plane adds up what each export says",
        ));
    }
    Ok(())
}

fn histogram(point: &HistogramDataPoint, field: &str) -> Result<LatencyHistogram, Status> {
    let bounds = names::latency_bounds_seconds();
    let same = point.explicit_bounds.len() == bounds.len()
        && point
            .explicit_bounds
            .iter()
            .zip(&bounds)
            .all(|(a, b)| (a - b).abs() <= b * 1e-9);
    if !same {
        return Err(invalid(
            &format!("{field}.explicit_bounds"),
            format!(
                "must be Sinew's {} latency bounds in seconds (sinew::telemetry::otlp_names::latency_bounds_seconds)",
                bounds.len()
            ),
        ));
    }
    if point.bucket_counts.len() != LATENCY_BOUNDS_MICROS.len() + 1 {
        return Err(invalid(
            &format!("{field}.bucket_counts"),
            format!(
                "holds {} counts, not {}",
                point.bucket_counts.len(),
                LATENCY_BOUNDS_MICROS.len() + 1
            ),
        ));
    }
    let total = point
        .bucket_counts
        .iter()
        .try_fold(0u64, |sum, &c| sum.checked_add(c));
    if total != Some(point.count) {
        return Err(invalid(
            &format!("{field}.count"),
            "is not the sum of bucket_counts",
        ));
    }
    let sum = point.sum.unwrap_or(0.0);
    // A day per request at most: sums past that are nonsense, and would
    // overflow the window's microsecond totals.
    let most = point.count as f64 * 86_400.0;
    if !sum.is_finite() || sum < 0.0 || sum > most {
        return Err(invalid(
            &format!("{field}.sum"),
            "must be a non-negative number of seconds, at most a day per request",
        ));
    }
    Ok(LatencyHistogram {
        counts: point.bucket_counts.clone(),
        sum_micros: (sum * 1e6).round() as u64,
    })
}

fn count(point: &NumberDataPoint, field: &str) -> Result<u64, Status> {
    match point.value {
        Some(number_data_point::Value::AsInt(n)) if n >= 0 => Ok(n as u64),
        Some(number_data_point::Value::AsDouble(n))
            if n.is_finite() && n >= 0.0 && n.fract() == 0.0 =>
        {
            Ok(n as u64)
        }
        _ => Err(invalid(
            &format!("{field}.value"),
            "must be a non-negative whole number",
        )),
    }
}

/// Reads `request`: one report per resource. At most `max_points` data
/// points in all.
pub(crate) fn parse(
    request: &ExportMetricsServiceRequest,
    max_points: usize,
) -> Result<Vec<Report>, Status> {
    let mut points = 0usize;
    let mut reports = Vec::with_capacity(request.resource_metrics.len());
    for (r, resource_metrics) in request.resource_metrics.iter().enumerate() {
        let field = format!("resource_metrics[{r}].resource");
        let attributes = resource_metrics
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        let mut report = Report {
            service: name(attributes, names::SERVICE_NAME, &field)?.to_owned(),
            instance: crate::limits::truncate(
                string_attribute(attributes, names::SERVICE_INSTANCE_ID).unwrap_or(""),
                256,
            )
            .to_owned(),
            service_field: format!("{field}.attributes[{}]", names::SERVICE_NAME),
            edges: BTreeMap::new(),
        };
        let mut failures: BTreeMap<Key, (u64, String)> = BTreeMap::new();
        for (s, scope) in resource_metrics.scope_metrics.iter().enumerate() {
            for (m, metric) in scope.metrics.iter().enumerate() {
                let field = format!("resource_metrics[{r}].scope_metrics[{s}].metrics[{m}]");
                match (metric.name.as_str(), &metric.data) {
                    (names::DURATION, Some(Data::Histogram(h))) => {
                        let field = format!("{field}.histogram");
                        delta_only(h.aggregation_temporality, &field)?;
                        for (p, point) in h.data_points.iter().enumerate() {
                            points += 1;
                            if points > max_points {
                                return Err(too_many(max_points));
                            }
                            let field = format!("{field}.data_points[{p}]");
                            let key = key(&point.attributes, &field)?;
                            let latency = histogram(point, &field)?;
                            let delta = report.edges.entry(key).or_default();
                            delta.requests = delta.requests.saturating_add(point.count);
                            delta.latency.merge(&latency);
                        }
                    }
                    (names::FAILURES, Some(Data::Sum(sum))) => {
                        let field = format!("{field}.sum");
                        delta_only(sum.aggregation_temporality, &field)?;
                        for (p, point) in sum.data_points.iter().enumerate() {
                            points += 1;
                            if points > max_points {
                                return Err(too_many(max_points));
                            }
                            let field = format!("{field}.data_points[{p}]");
                            let key = key(&point.attributes, &field)?;
                            let n = count(point, &field)?;
                            let entry = failures.entry(key).or_insert((0, field));
                            entry.0 = entry.0.saturating_add(n);
                        }
                    }
                    (names::DURATION | names::FAILURES, _) => {
                        return Err(invalid(
                            &format!("{field}.data"),
                            format!(
                                "`{}` must be a {}",
                                metric.name,
                                if metric.name == names::DURATION {
                                    "histogram"
                                } else {
                                    "sum"
                                }
                            ),
                        ));
                    }
                    // Other metrics are not the control plane's business.
                    _ => {}
                }
            }
        }
        for (key, (n, field)) in failures {
            let requests = report.edges.get(&key).map_or(0, |d| d.requests);
            if n > requests {
                return Err(invalid(
                    &field,
                    format!("{n} failures for an edge with {requests} requests in the same export"),
                ));
            }
            if let Some(delta) = report.edges.get_mut(&key) {
                delta.failures = delta.failures.saturating_add(n);
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

fn too_many(max: usize) -> Status {
    Status::resource_exhausted(format!(
        "resource_metrics: more than {max} data points in one export"
    ))
}
