//! gRPC's rules where a control plane not written with Sinew in mind
//! leans on them: HTTP/2 for gRPC, the HTTP filter chain (A39), routes
//! with actions Sinew lacks (A28), readiness down to endpoints, data
//! errors (A88) and fallback (A71).

use super::*;
use envoy_types::pb::envoy::config::core::v3::{ConfigSource, PathConfigSource, config_source};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route,
    route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use server::any;

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// Listener `reviews` (RDS `reviews` from `source`) with these filters.
pub fn listener_with(filters: Vec<HttpFilter>, source: ConfigSource) -> Any {
    let hcm = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            route_config_name: "reviews".to_owned(),
            config_source: Some(source),
        })),
        http_filters: filters,
        ..HttpConnectionManager::default()
    };
    any(
        LISTENER,
        &Listener {
            name: "reviews".to_owned(),
            api_listener: Some(ApiListener {
                api_listener: Some(any(HCM, &hcm)),
            }),
            ..Listener::default()
        },
    )
}

/// A filter of type `type_url`.
pub fn filter(name: &str, type_url: &str, optional: bool) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: type_url.to_owned(),
            value: Vec::new(),
        })),
        is_optional: optional,
        ..HttpFilter::default()
    }
}

pub const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// Waits (bounded) for the next NACK after the `seen` first ones and
/// returns its message.
pub async fn next_nack(ads: &Ads, seen: usize) -> String {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let nacks = ads.nacks();
            if nacks.len() > seen {
                let detail = nacks[seen].error_detail.clone().unwrap();
                return detail.message;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a NACK within 20 s")
}

/// Sends until a request fails (for at most 20 s), and checks that it
/// failed for want of `reviews-v1`'s endpoints.
async fn assert_requests_fail_with_no_endpoint(client: &sinew::mesh::HttpClient<Empty<Bytes>>) {
    let err = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match get(client).await {
                Ok(_) => tokio::task::yield_now().await,
                Err(err) => return err,
            }
        }
    })
    .await
    .expect("a failed request within 20 s");
    assert_eq!(
        err.downcast_ref::<RouteError>(),
        Some(&RouteError::NoEndpoint("reviews-v1".to_owned()))
    );
}

/// Polls `check` until it holds, for at most 20 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within 20 s: {what}"));
}

#[tokio::test]
async fn grpc_calls_go_over_http2_when_the_cluster_does_not_say_so() {
    use sinew::mesh::RawCodec;
    let server = support::serve(tower::service_fn(
        move |req: http::Request<hyper::body::Incoming>| async move {
            let method = tower::service_fn(move |req: tonic::Request<Bytes>| async move {
                let mut reply = b"hello ".to_vec();
                reply.extend_from_slice(&req.into_inner());
                Ok::<_, tonic::Status>(tonic::Response::new(Bytes::from(reply)))
            });
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok::<_, std::convert::Infallible>(grpc.unary(method, req).await)
        },
    ))
    .await;
    let ads = Ads::default();
    // The cluster carries no http2_protocol_options, as istiod's and
    // Traffic Director's gRPC clusters do not.
    reviews(&ads, &[("reviews-v1", &[server.addr])]);
    let control = ads.serve().await;
    let mesh = Mesh::builder()
        .control_plane(&control.url(""))
        .build()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::with_origin(
        mesh.grpc_channel("reviews"),
        "http://reviews".parse().unwrap(),
    );
    client.ready().await.unwrap();
    let reply = client
        .unary(
            tonic::Request::new(Bytes::from_static(b"mesh")),
            http::uri::PathAndQuery::from_static("/sinew.test.Greeter/Hello"),
            RawCodec,
        )
        .await
        .unwrap();
    assert_eq!(reply.into_inner(), Bytes::from_static(b"hello mesh"));
}

#[tokio::test]
async fn http_clients_read_the_protocol_from_http_protocol_options() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
        HttpProtocolOptions,
        http_protocol_options::{
            ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
        },
    };
    // A server that answers with the protocol it was asked in.
    let server = support::serve(support::handler(|req| async move {
        support::text(
            200,
            if req.version() == http::Version::HTTP_2 {
                "h2"
            } else {
                "h1"
            },
        )
    }))
    .await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[server.addr])]);
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..HttpProtocolOptions::default()
    };
    let mut cluster = Cluster::decode(
        server::eds_cluster("reviews-v1", LbPolicy::RoundRobin)
            .value
            .as_slice(),
    )
    .unwrap();
    cluster.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
        any(
            "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            &options,
        ),
    );
    let control = ads.serve().await;
    let (_mesh, client) = reviews_client(&control.url("")).await;
    assert_eq!(get(&client).await.unwrap(), "h1");
    ads.update(|r| r.put(CLUSTER, "reviews-v1", any(CLUSTER, &cluster)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(&client).await.unwrap() != "h2" {
        assert!(tokio::time::Instant::now() < deadline, "never HTTP/2");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_http_filter_chain_is_checked_as_grpc_does() {
    let (a, _) = named("a").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let (mesh, client) = reviews_client(&control.url("")).await;
    assert_eq!(get(&client).await.unwrap(), "a");
    let ads_source = server::ads_source();
    let router = server::router;
    let cases: Vec<(Vec<HttpFilter>, &str)> = vec![
        (
            vec![filter("authz", RBAC, false), router()],
            "Listener reviews: api_listener.http_filters[0]: filter `authz` of type `type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC` is not supported, and not marked is_optional",
        ),
        (
            vec![],
            "Listener reviews: api_listener.http_filters: no router filter (it must be the last)",
        ),
        (
            vec![router(), filter("authz", RBAC, true)],
            "Listener reviews: api_listener.http_filters[0]: the router must be the last filter, and `authz` follows it",
        ),
        (
            vec![router(), router()],
            "Listener reviews: api_listener.http_filters[1].name: `envoy.filters.http.router` names two filters of the chain",
        ),
        (
            vec![HttpFilter {
                name: "envoy.filters.http.router".to_owned(),
                ..HttpFilter::default()
            }],
            "Listener reviews: api_listener.http_filters[0].typed_config: missing (filter `envoy.filters.http.router`)",
        ),
    ];
    for (i, (filters, expected)) in cases.into_iter().enumerate() {
        ads.update(|r| {
            r.put(
                LISTENER,
                "reviews",
                listener_with(filters, ads_source.clone()),
            )
        });
        assert_eq!(next_nack(&ads, i).await, expected);
        // Nothing accepted is lost: requests keep flowing.
        assert_eq!(get(&client).await.unwrap(), "a");
    }
    // An optional filter Sinew does not know is passed over.
    ads.update(|r| {
        r.put(
            LISTENER,
            "reviews",
            listener_with(
                vec![filter("authz", RBAC, true), router()],
                ads_source.clone(),
            ),
        )
    });
    eventually("the listener with an optional filter is ACKed", || {
        state_of(&mesh, Kind::Listener, "reviews") == Some(ResourceState::Acked)
    })
    .await;
    assert_eq!(ads.nacks().len(), 5);
    assert_eq!(get(&client).await.unwrap(), "a");
}

#[tokio::test]
async fn config_sources_other_than_ads_or_self_are_nacked() {
    let (a, _) = named("a").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let (_mesh, client) = reviews_client(&control.url("")).await;
    assert_eq!(get(&client).await.unwrap(), "a");
    let path = ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::PathConfigSource(
            PathConfigSource {
                path: "/etc/routes.yaml".to_owned(),
                ..PathConfigSource::default()
            },
        )),
        ..ConfigSource::default()
    };
    ads.update(|r| {
        r.put(
            LISTENER,
            "reviews",
            listener_with(vec![server::router()], path.clone()),
        )
    });
    assert_eq!(
        next_nack(&ads, 0).await,
        "Listener reviews: api_listener.rds.config_source: only `ads` and `self` are supported"
    );
    assert_eq!(get(&client).await.unwrap(), "a");
}

/// A route configuration: `/old` answered by a direct response (which
/// Sinew does not do), everything else to `reviews-v1`.
fn with_a_direct_response() -> Any {
    let route_to = |prefix: &str, action| Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(prefix.to_owned())),
            ..RouteMatch::default()
        }),
        action: Some(action),
        ..Route::default()
    };
    any(
        ROUTE,
        &RouteConfiguration {
            name: "reviews".to_owned(),
            virtual_hosts: vec![VirtualHost {
                name: "all".to_owned(),
                domains: vec!["*".to_owned()],
                routes: vec![
                    route_to(
                        "/old",
                        route::Action::DirectResponse(DirectResponseAction {
                            status: 301,
                            ..DirectResponseAction::default()
                        }),
                    ),
                    route_to(
                        "/",
                        route::Action::Route(RouteAction {
                            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                                "reviews-v1".to_owned(),
                            )),
                            ..RouteAction::default()
                        }),
                    ),
                ],
                ..VirtualHost::default()
            }],
            ..RouteConfiguration::default()
        },
    )
}

#[tokio::test]
async fn a_route_with_an_unsupported_action_fails_only_its_requests() {
    let (a, _) = named("a").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    ads.update(|r| r.put(ROUTE, "reviews", with_a_direct_response()));
    let control = ads.serve().await;
    let (mesh, client) = reviews_client(&control.url("")).await;
    assert_eq!(get(&client).await.unwrap(), "a");
    let request = Request::get("http://reviews/old/page")
        .body(Empty::new())
        .unwrap();
    let err = client.clone().oneshot(request).await.unwrap_err();
    let Some(RouteError::RouteFails {
        service,
        route,
        reason,
    }) = err.downcast_ref::<RouteError>().cloned()
    else {
        panic!("unexpected error: {err}");
    };
    assert_eq!((service.as_str(), route), ("reviews", 0));
    assert_eq!(
        reason,
        "RouteConfiguration `reviews` virtual_hosts[0].routes[0].action: `direct_response` is not supported (only `route`)"
    );
    assert!(ads.nacks().is_empty(), "the resource is accepted");
    assert_eq!(
        state_of(&mesh, Kind::Route, "reviews"),
        Some(ResourceState::Acked)
    );
    // Through a gRPC channel the same request fails with UNAVAILABLE.
    let mut grpc = tonic::client::Grpc::with_origin(
        mesh.grpc_channel("reviews"),
        "http://reviews".parse().unwrap(),
    );
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(Bytes::new()),
            http::uri::PathAndQuery::from_static("/old/Method"),
            sinew::mesh::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("direct_response"), "{status:?}");
}

#[tokio::test]
async fn a_first_request_waits_for_endpoints_held_back_by_the_control_plane() {
    let (a, _) = named("a").await;
    let ads = Ads::default();
    // Listener, routes and cluster, but the assignment is held back.
    ads.update(|r| {
        r.put(LISTENER, "reviews", server::listener("reviews", "reviews"));
        r.put(
            ROUTE,
            "reviews",
            server::route_config("reviews", &[("reviews-v1", 1)]),
        );
        r.put(
            CLUSTER,
            "reviews-v1",
            server::eds_cluster("reviews-v1", LbPolicy::RoundRobin),
        );
    });
    let control = ads.serve().await;
    let (mesh, client) = reviews_client(&control.url("")).await;
    let first = tokio::spawn({
        let client = client.clone();
        async move { get(&client).await.map_err(|e| e.to_string()) }
    });
    eventually("the cluster is ACKed and its assignment asked for", || {
        state_of(&mesh, Kind::Cluster, "reviews-v1") == Some(ResourceState::Acked)
            && state_of(&mesh, Kind::Endpoints, "reviews-v1") == Some(ResourceState::Requested)
    })
    .await;
    // The snapshot has the service and its cluster, with no endpoint yet:
    // a request let through now would fail with "no endpoint in service".
    assert!(mesh.snapshot().service("reviews").is_some());
    let second = tokio::spawn({
        let client = client.clone();
        async move { get(&client).await.map_err(|e| e.to_string()) }
    });
    tokio::task::yield_now().await;
    assert!(!first.is_finished() && !second.is_finished());
    ads.update(|r| {
        r.put(
            ENDPOINTS,
            "reviews-v1",
            server::assignment("reviews-v1", &[a.addr]),
        )
    });
    let timeout = Duration::from_secs(20);
    assert_eq!(
        tokio::time::timeout(timeout, first).await.unwrap().unwrap(),
        Ok("a".to_owned())
    );
    assert_eq!(
        tokio::time::timeout(timeout, second)
            .await
            .unwrap()
            .unwrap(),
        Ok("a".to_owned())
    );
}

/// A mesh from a bootstrap naming `servers`, each with its features.
async fn bootstrapped(
    servers: &[(&str, &[&str])],
) -> (Mesh, sinew::mesh::HttpClient<Empty<Bytes>>) {
    let servers: Vec<serde_json::Value> = servers
        .iter()
        .map(|(url, features)| serde_json::json!({"server_uri": url, "server_features": features}))
        .collect();
    let json = serde_json::json!({"xds_servers": servers, "node": {"id": "rules"}}).to_string();
    let bootstrap = sinew::xds::Bootstrap::from_json(&json).unwrap();
    let mesh = Mesh::builder().bootstrap(bootstrap).build().await.unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    (mesh, client)
}

fn status_of(mesh: &Mesh, kind: Kind, name: &str) -> Option<sinew::xds::ResourceStatus> {
    mesh.xds_status()?
        .resources
        .into_iter()
        .find(|r| r.kind == kind && r.name == name)
}

#[tokio::test]
async fn a_cluster_left_out_of_a_response_keeps_its_value_by_default() {
    let (a, _) = named("a").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let (mesh, client) = bootstrapped(&[(&control.url(""), &[])]).await;
    assert_eq!(get(&client).await.unwrap(), "a");
    ads.update(|r| {
        r.by_type.get_mut(CLUSTER).unwrap().remove("reviews-v1");
        r.by_type.get_mut(LISTENER).unwrap().remove("reviews");
    });
    eventually("the absences are seen", || {
        state_of(&mesh, Kind::Cluster, "reviews-v1") == Some(ResourceState::DoesNotExist)
            && state_of(&mesh, Kind::Listener, "reviews") == Some(ResourceState::DoesNotExist)
    })
    .await;
    let cluster = status_of(&mesh, Kind::Cluster, "reviews-v1").unwrap();
    assert!(cluster.has_value, "an ambient error: the value stays");
    assert!(cluster.error.unwrap().contains("gRFC A88"));
    for _ in 0..10 {
        assert_eq!(get(&client).await.unwrap(), "a");
    }
    assert!(ads.nacks().is_empty());
}

#[tokio::test]
async fn with_fail_on_data_errors_a_cluster_left_out_is_dropped() {
    let (a, _) = named("a").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let (mesh, client) = bootstrapped(&[(&control.url(""), &["fail_on_data_errors"])]).await;
    assert_eq!(get(&client).await.unwrap(), "a");
    ads.update(|r| {
        r.by_type.get_mut(CLUSTER).unwrap().remove("reviews-v1");
    });
    eventually("the cluster is dropped", || {
        status_of(&mesh, Kind::Cluster, "reviews-v1")
            .is_some_and(|s| s.state == ResourceState::DoesNotExist && !s.has_value)
    })
    .await;
    // Its requests fail now, saying why.
    assert_requests_fail_with_no_endpoint(&client).await;
}

#[tokio::test]
async fn with_fail_on_data_errors_a_rejected_cluster_is_dropped() {
    let (a, _) = named("a").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let (mesh, client) = bootstrapped(&[(&control.url(""), &["fail_on_data_errors"])]).await;
    assert_eq!(get(&client).await.unwrap(), "a");
    ads.update(|r| {
        r.put(
            CLUSTER,
            "reviews-v1",
            server::eds_cluster("reviews-v1", LbPolicy::ClusterProvided),
        )
    });
    next_nack(&ads, 0).await;
    eventually("the cluster is dropped", || {
        status_of(&mesh, Kind::Cluster, "reviews-v1")
            .is_some_and(|s| s.state == ResourceState::Nacked && !s.has_value)
    })
    .await;
    assert_requests_fail_with_no_endpoint(&client).await;
}

#[tokio::test]
async fn the_fallback_serves_while_the_primary_is_down_and_the_primary_takes_over_when_back() {
    let (a, _) = named("a").await;
    let (b, _) = named("b").await;
    let primary_ads = Ads::default();
    reviews(&primary_ads, &[("reviews-v1", &[b.addr])]);
    let fallback_ads = Ads::default();
    reviews(&fallback_ads, &[("reviews-v1", &[a.addr])]);
    let fallback = fallback_ads.serve().await;
    let primary_at = support::closed_port().await;
    let primary_url = format!("http://{primary_at}");
    let (mesh, client) = bootstrapped(&[(&primary_url, &[]), (&fallback.url(""), &[])]).await;
    // The primary is down at start: the fallback's configuration serves.
    assert_eq!(get(&client).await.unwrap(), "a");
    let connected_to = |mesh: &Mesh| match mesh.xds_status().map(|s| s.connection) {
        Some(sinew::xds::ConnectionState::Connected { server }) => server,
        _ => String::new(),
    };
    assert_eq!(connected_to(&mesh), fallback.url(""));

    // The primary comes back: the client goes back to it.
    let _primary = serve_at(
        primary_at,
        envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer::new(primary_ads.clone()),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while get(&client).await.unwrap() != "b" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("back on the primary within 30 s");
    assert_eq!(connected_to(&mesh), primary_url);
    assert!(!primary_ads.received().is_empty());
}

#[tokio::test]
async fn a_listener_rejected_on_arrival_fails_requests_at_once_with_the_reason() {
    let (a, _) = named("a").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    ads.update(|r| {
        r.put(
            LISTENER,
            "reviews",
            listener_with(
                vec![filter("authz", RBAC, false), server::router()],
                server::ads_source(),
            ),
        )
    });
    let control = ads.serve().await;
    // A long initial fetch timeout: the request must not wait it out.
    let mesh = Mesh::builder()
        .control_plane(&control.url(""))
        .initial_fetch_timeout(Duration::from_secs(120))
        .build()
        .await
        .unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let err = tokio::time::timeout(Duration::from_secs(20), get(&client))
        .await
        .expect("failed within 20 s, not after the initial fetch timeout")
        .unwrap_err();
    let Some(RouteError::Undiscovered { service, reason }) =
        err.downcast_ref::<RouteError>().cloned()
    else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(service, "reviews");
    assert!(
        reason.starts_with(
            "Listener `reviews` was rejected: api_listener.http_filters[0]: filter `authz`"
        ),
        "{reason}"
    );
}
