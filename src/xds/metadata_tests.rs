//! A cluster's service breaker and a route's or a cluster's classifier,
//! read from the resources' `sinew` filter metadata.

use super::resource::{Kind, Resource};
use super::state::{State, check};
use super::translate::decode;
use crate::breaker::{BreakerConfig, FailureRateConfig};
use crate::classify::{Classifiers, StatusClassifier};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::google::protobuf::{Any, ListValue, Struct, Value, value::Kind as V};
use prost::Message;
use std::time::Duration;

fn any<M: Message>(kind: Kind, m: &M) -> Any {
    Any {
        type_url: kind.type_url().to_owned(),
        value: m.encode_to_vec(),
    }
}

fn num(n: f64) -> Value {
    Value {
        kind: Some(V::NumberValue(n)),
    }
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(V::StringValue(s.to_owned())),
    }
}

fn object(fields: &[(&str, Value)]) -> Value {
    Value {
        kind: Some(V::StructValue(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        })),
    }
}

/// Metadata with `fields` under `sinew`, and something under another
/// filter's key, which is passed over.
fn metadata(fields: &[(&str, Value)]) -> Option<Metadata> {
    let Some(V::StructValue(sinew)) = object(fields).kind else {
        return None;
    };
    let mut metadata = Metadata::default();
    metadata.filter_metadata.insert("sinew".to_owned(), sinew);
    metadata.filter_metadata.insert(
        "envoy.lb".to_owned(),
        Struct {
            fields: [("canary".to_owned(), text("yes"))].into_iter().collect(),
        },
    );
    Some(metadata)
}

fn cluster_with(fields: &[(&str, Value)]) -> Any {
    any(
        Kind::Cluster,
        &Cluster {
            name: "c".to_owned(),
            metadata: metadata(fields),
            ..Cluster::default()
        },
    )
}

/// The cluster's breaker and classifier, or the error that NACKs it.
fn translated(fields: &[(&str, Value)]) -> Result<(Option<BreakerConfig>, Option<String>), String> {
    match decode(Kind::Cluster, &cluster_with(fields)) {
        Ok((_, Resource::Cluster(c))) => Ok((c.config.breaker, c.config.classifier)),
        Ok(other) => Err(format!("not a cluster: {other:?}")),
        Err((_, e)) => Err(e),
    }
}

fn breaker(fields: &[(&str, Value)]) -> Value {
    object(fields)
}

#[test]
fn a_clusters_breaker_and_classifier_come_from_its_sinew_metadata() {
    let got = translated(&[
        (
            "breaker",
            breaker(&[
                ("consecutive_failures", num(3.0)),
                (
                    "failure_rate",
                    object(&[
                        ("threshold", num(0.25)),
                        ("window", text("30s")),
                        ("min_requests", num(10.0)),
                    ]),
                ),
                ("open_for", text("2500ms")),
                ("half_open_probes", num(2.0)),
            ]),
        ),
        ("classifier", text("strict-grpc")),
        // Keys Sinew does not know are passed over, as gRPC does.
        ("failover_threshold_percent", num(70.0)),
        ("something_later", text("ignored")),
    ]);
    assert_eq!(
        got,
        Ok((
            Some(BreakerConfig {
                consecutive_failures: Some(3),
                failure_rate: Some(FailureRateConfig {
                    threshold: 0.25,
                    window: Duration::from_secs(30),
                    min_requests: 10,
                }),
                open_for: Duration::from_millis(2500),
                half_open_probes: 2,
            }),
            Some("strict-grpc".to_owned())
        ))
    );

    // Fields left out take the mesh file's defaults; a null turns a
    // condition off; a whole-number ratio is a ratio.
    let got = translated(&[(
        "breaker",
        breaker(&[
            (
                "consecutive_failures",
                Value {
                    kind: Some(V::NullValue(0)),
                },
            ),
            ("failure_rate", object(&[("threshold", num(1.0))])),
        ]),
    )]);
    assert_eq!(
        got,
        Ok((
            Some(BreakerConfig {
                consecutive_failures: None,
                failure_rate: Some(FailureRateConfig {
                    threshold: 1.0,
                    ..FailureRateConfig::default()
                }),
                ..BreakerConfig::default()
            }),
            None
        ))
    );

    // No metadata, or none under `sinew`: no breaker, the default classifier.
    assert_eq!(translated(&[]), Ok((None, None)));
}

#[test]
fn bad_sinew_metadata_nacks_the_cluster_naming_the_field() {
    let at = "metadata.filter_metadata.sinew";
    let cases = [
        (
            vec![(
                "breaker",
                breaker(&[("failure_rate", object(&[("threshold", num(1.5))]))]),
            )],
            format!("{at}.breaker.failure_rate.threshold: must be above 0 and at most 1"),
        ),
        (
            vec![("breaker", breaker(&[("half_open_probes", text("two"))]))],
            format!("{at}.breaker.half_open_probes: invalid type: string \"two\", expected u32"),
        ),
        (
            vec![("breaker", breaker(&[("open_for", text("soon"))]))],
            format!("{at}.breaker.open_for: invalid value: string \"soon\", expected a duration"),
        ),
        (
            vec![("breaker", breaker(&[("consecutive_failures", num(0.5))]))],
            format!(
                "{at}.breaker.consecutive_failures: invalid type: floating point `0.5`, expected u32"
            ),
        ),
        (
            vec![("breaker", text("on"))],
            format!("{at}.breaker: must be a struct"),
        ),
        (
            vec![("classifier", num(1.0))],
            format!("{at}.classifier: must be a string"),
        ),
        (
            vec![("classifier", text("two words"))],
            format!(
                "{at}.classifier: classifier names are 1 to 128 characters of letters, digits, '.', '_' and '-'"
            ),
        ),
        (
            vec![(
                "breaker",
                breaker(&[(
                    "failure_rate",
                    object(&[(
                        "window",
                        Value {
                            kind: Some(V::ListValue(ListValue {
                                values: vec![num(f64::NAN)],
                            })),
                        },
                    )]),
                )]),
            )],
            format!("{at}.breaker.failure_rate.window[0]: must be a finite number"),
        ),
    ];
    for (fields, expected) in cases {
        assert_eq!(translated(&fields), Err(expected));
    }
    // A field the breaker does not have is refused, named, as in the
    // mesh file: a setting that would be lost is not taken silently.
    let unknown = translated(&[("breaker", breaker(&[("open_four", text("1s"))]))]);
    assert!(
        unknown
            .as_ref()
            .is_err_and(|e| e.starts_with(&format!("{at}.breaker")) && e.contains("open_four")),
        "{unknown:?}"
    );
}

fn route_with(fields: &[(&str, Value)]) -> Any {
    any(
        Kind::Route,
        &RouteConfiguration {
            name: "r".to_owned(),
            virtual_hosts: vec![VirtualHost {
                domains: vec!["*".to_owned()],
                routes: vec![Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
                        ..RouteMatch::default()
                    }),
                    action: Some(route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                            "v1".to_owned(),
                        )),
                        ..RouteAction::default()
                    })),
                    metadata: metadata(fields),
                    ..Route::default()
                }],
                ..VirtualHost::default()
            }],
            ..RouteConfiguration::default()
        },
    )
}

#[test]
fn a_routes_classifier_comes_from_its_sinew_metadata() {
    let classifier_of = |fields: &[(&str, Value)]| match decode(Kind::Route, &route_with(fields)) {
        Ok((_, Resource::Route(table))) => Ok(table
            .routes_for("any")
            .and_then(|routes| routes.first())
            .and_then(|r| r.classifier.clone())),
        Ok(other) => Err(format!("not a route table: {other:?}")),
        Err((_, e)) => Err(e),
    };
    assert_eq!(
        classifier_of(&[("classifier", text("retry-500")), ("other", num(1.0))]),
        Ok(Some("retry-500".to_owned()))
    );
    assert_eq!(classifier_of(&[]), Ok(None));
    assert_eq!(
        classifier_of(&[("classifier", text(""))]),
        Err("virtual_hosts[0].routes[0].metadata.filter_metadata.sinew.classifier: classifier names are 1 to 128 characters of letters, digits, '.', '_' and '-'".to_owned())
    );
}

#[test]
fn a_resource_naming_a_classifier_not_registered_is_nacked_alone() {
    let mut registered = Classifiers::default();
    registered
        .insert("retry-500", StatusClassifier::default())
        .unwrap_or_else(|e| unreachable!("{e}"));
    let checked = |kind: Kind, any: &Any, classifiers: &Classifiers| {
        let (name, resource) = decode(kind, any).map_err(|(_, e)| e)?;
        check(&name, &resource, classifiers)
    };
    let cluster = cluster_with(&[("classifier", text("retry-500"))]);
    let route = route_with(&[("classifier", text("retry-500"))]);
    assert_eq!(checked(Kind::Cluster, &cluster, &registered), Ok(()));
    assert_eq!(checked(Kind::Route, &route, &registered), Ok(()));
    let unregistered = Classifiers::default();
    assert_eq!(
        checked(Kind::Cluster, &cluster, &unregistered),
        Err(
            r#"metadata.filter_metadata.sinew.classifier: no classifier named "retry-500" is registered"#
                .to_owned()
        )
    );
    assert_eq!(
        checked(Kind::Route, &route, &unregistered),
        Err(r#"virtual_hosts[0].routes[0].metadata.filter_metadata.sinew.classifier: no classifier named "retry-500" is registered"#.to_owned())
    );
    // The default is always there.
    let default = cluster_with(&[("classifier", text("default"))]);
    assert_eq!(checked(Kind::Cluster, &default, &unregistered), Ok(()));

    // In a response: the cluster naming an unregistered classifier is
    // NACKed, its sibling applies.
    let mut state = State::new("http://cp");
    let mut wanted = state.wanted();
    wanted
        .entry(Kind::Cluster)
        .or_default()
        .extend(["c".to_owned(), "d".to_owned()]);
    state.subscribe(&wanted, true);
    let sibling = any(
        Kind::Cluster,
        &Cluster {
            name: "d".to_owned(),
            ..Cluster::default()
        },
    );
    let applied = state.apply_response(Kind::Cluster, "1", "n", &[cluster, sibling]);
    assert_eq!(
        applied.rejected.as_deref(),
        Some(
            r#"Cluster c: metadata.filter_metadata.sinew.classifier: no classifier named "retry-500" is registered"#
        )
    );
    assert_eq!(applied.changed, [(Kind::Cluster, "d".to_owned())]);
}
