//! Server Listeners (gRFC A36) and TLS contexts (gRFC A29) as the control
//! plane serves them, read off a raw ADS stream: a Listener for each
//! endpoint address a server asks for, by whatever name template, STRICT
//! mTLS where a cluster holding the endpoint requires it; none for an
//! address no cluster holds; registrations add and remove them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;

use common::{RawStream, TOKEN, admin, scratch, within};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    TransportSocket, address, socket_address::PortSpecifier, transport_socket::ConfigType,
};
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{route, route_match};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext,
    common_tls_context::ValidationContextType,
};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use http::{Method, StatusCode};
use prost::Message;
use serde_json::json;
use sinew_control_plane::generate::{CLUSTER, LISTENER};
use sinew_control_plane::{ControlPlane, StartError};
use std::collections::BTreeMap;
use std::time::Duration;

const TEMPLATE: &str = "grpc/server?xds.resource.listening_address=";

async fn start(dir: &std::path::Path) -> ControlPlane {
    ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .mesh_file(dir.join("mesh.yaml"))
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .reload_interval(Duration::from_millis(20))
        .certificate_provider_instance("spire")
        .start()
        .await
        .unwrap()
}

async fn response(stream: &mut RawStream) -> DiscoveryResponse {
    within("a response", stream.inbound.message())
        .await
        .unwrap()
        .unwrap()
}

fn listeners(r: &DiscoveryResponse) -> BTreeMap<String, Listener> {
    assert_eq!(r.type_url, LISTENER);
    r.resources
        .iter()
        .map(|any| {
            let l = Listener::decode(any.value.as_slice()).unwrap();
            (l.name.clone(), l)
        })
        .collect()
}

/// The instance names a context's certificate and roots come from, and
/// its SAN matchers.
#[allow(deprecated)]
fn common_names(c: &CommonTlsContext) -> (String, String, Vec<String>) {
    let Some(ValidationContextType::ValidationContext(v)) = &c.validation_context_type else {
        panic!("no validation context: {c:?}")
    };
    assert!(v.match_typed_subject_alt_names.is_empty(), "{v:?}");
    let sans = v
        .match_subject_alt_names
        .iter()
        .map(|m| match &m.match_pattern {
            Some(MatchPattern::Exact(id)) => id.clone(),
            other => panic!("not an exact matcher: {other:?}"),
        })
        .collect();
    (
        c.tls_certificate_provider_instance
            .as_ref()
            .unwrap()
            .instance_name
            .clone(),
        v.ca_certificate_provider_instance
            .as_ref()
            .unwrap()
            .instance_name
            .clone(),
        sans,
    )
}

fn typed(socket: &TransportSocket) -> &[u8] {
    match &socket.config_type {
        Some(ConfigType::TypedConfig(any)) => &any.value,
        None => panic!("no typed config"),
    }
}

/// What a server Listener says: its address, whether it is STRICT (and
/// then its provider instances), and that it routes to the server itself.
fn shape(l: &Listener) -> (String, Option<(String, String)>) {
    let Some(address::Address::SocketAddress(a)) = l.address.as_ref().unwrap().address.as_ref()
    else {
        panic!("no socket address")
    };
    let Some(PortSpecifier::PortValue(port)) = a.port_specifier else {
        panic!("no port")
    };
    assert_eq!(l.filter_chains.len(), 1);
    let chain = &l.filter_chains[0];
    assert_eq!(chain.filters.len(), 1);
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!("no HttpConnectionManager")
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    let Some(RouteSpecifier::RouteConfig(routes)) = &hcm.route_specifier else {
        panic!("routes not inline")
    };
    let vh = &routes.virtual_hosts[0];
    assert_eq!(vh.domains, ["*"]);
    assert!(matches!(
        vh.routes[0].action,
        Some(route::Action::NonForwardingAction(_))
    ));
    assert_eq!(
        vh.routes[0].r#match.as_ref().unwrap().path_specifier,
        Some(route_match::PathSpecifier::Prefix(String::new()))
    );
    assert!(hcm.http_filters.last().unwrap().name.ends_with("router"));
    let tls = chain.transport_socket.as_ref().map(|s| {
        let d = DownstreamTlsContext::decode(typed(s)).unwrap();
        assert!(d.require_client_certificate.unwrap().value);
        let (identity, roots, sans) = common_names(d.common_tls_context.as_ref().unwrap());
        assert!(sans.is_empty(), "gRPC servers refuse SAN matchers");
        (identity, roots)
    });
    let ip: std::net::IpAddr = a.address.parse().unwrap();
    (
        std::net::SocketAddr::new(ip, u16::try_from(port).unwrap()).to_string(),
        tls,
    )
}

#[tokio::test]
async fn servers_get_listeners_for_their_endpoint_addresses() {
    let dir = scratch("server-listeners");
    std::fs::write(
        dir.join("mesh.yaml"),
        "clusters:\n  plain:\n    endpoints: [{ address: \"127.0.0.1:1001\" }]\n  secure:\n    identities: [spiffe://example.org/ns/default/sa/secure]\n    endpoints: [{ address: \"127.0.0.1:1002\" }]\n  any-peer:\n    mtls: true\n    endpoints: [{ address: \"127.0.0.1:1003\" }]\n  also-plain:\n    endpoints: [{ address: \"127.0.0.1:1003\" }]\n",
    )
    .unwrap();
    let cp = start(&dir).await;
    let mut stream = RawStream::open(cp.xds_addr()).await;

    // Clusters name the configured provider instance for both the
    // certificate and the roots, and their identities as SAN matchers.
    stream.request(CLUSTER, &["secure", "any-peer", "plain"], "", "", None);
    let r = response(&mut stream).await;
    let clusters: BTreeMap<String, Cluster> = r
        .resources
        .iter()
        .map(|any| {
            let c = Cluster::decode(any.value.as_slice()).unwrap();
            (c.name.clone(), c)
        })
        .collect();
    let upstream = |name: &str| {
        clusters[name].transport_socket.as_ref().map(|s| {
            let u = UpstreamTlsContext::decode(typed(s)).unwrap();
            common_names(u.common_tls_context.as_ref().unwrap())
        })
    };
    let spire = || "spire".to_owned();
    assert_eq!(
        upstream("secure"),
        Some((
            spire(),
            spire(),
            vec!["spiffe://example.org/ns/default/sa/secure".to_owned()]
        ))
    );
    assert_eq!(upstream("any-peer"), Some((spire(), spire(), Vec::new())));
    assert_eq!(upstream("plain"), None);
    stream.request(
        CLUSTER,
        &["secure", "any-peer", "plain"],
        &r.version_info,
        &r.nonce,
        None,
    );

    // Any template: the address is the name's last part.
    let names = [
        format!("{TEMPLATE}127.0.0.1:1001"),
        format!("{TEMPLATE}127.0.0.1:1002"),
        "xds.istio.io/grpc/lds/inbound/127.0.0.1:1003".to_owned(),
        format!("{TEMPLATE}127.0.0.1:1004"),
        // Wildcards: the endpoint at the port of the address this stream
        // comes from (127.0.0.1); none at 1009.
        format!("{TEMPLATE}0.0.0.0:1002"),
        format!("{TEMPLATE}[::]:1001"),
        format!("{TEMPLATE}0.0.0.0:1009"),
    ];
    let asked: Vec<&str> = names.iter().map(String::as_str).collect();
    stream.request(LISTENER, &asked, "", "", None);
    let r = response(&mut stream).await;
    let got = listeners(&r);
    let strict = Some((spire(), spire()));
    let expected = BTreeMap::from([
        (names[0].clone(), ("127.0.0.1:1001".to_owned(), None)),
        (
            names[1].clone(),
            ("127.0.0.1:1002".to_owned(), strict.clone()),
        ),
        // Held by a plaintext cluster and an mTLS one: STRICT, as the
        // latter's clients never speak plaintext.
        (
            names[2].clone(),
            ("127.0.0.1:1003".to_owned(), strict.clone()),
        ),
        // The wildcard address the server listens on, as gRPC requires.
        (
            names[4].clone(),
            ("0.0.0.0:1002".to_owned(), strict.clone()),
        ),
        (names[5].clone(), ("[::]:1001".to_owned(), None)),
    ]);
    let shapes = |got: &BTreeMap<String, Listener>| {
        got.iter()
            .map(|(n, l)| (n.clone(), shape(l)))
            .collect::<BTreeMap<_, _>>()
    };
    // 1004 and 1009 are nobody's endpoints: absent, as any unknown
    // resource is.
    assert_eq!(shapes(&got), expected);
    stream.request(LISTENER, &asked, &r.version_info, &r.nonce, None);

    // A registration at 1004 serves its Listener; its deregistration
    // takes it away again.
    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/registrations",
        Some(TOKEN),
        json!({ "name": "plain", "address": "127.0.0.1:1004" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let r = response(&mut stream).await;
    let mut with_1004 = expected.clone();
    with_1004.insert(names[3].clone(), ("127.0.0.1:1004".to_owned(), None));
    assert_eq!(shapes(&listeners(&r)), with_1004);
    stream.request(LISTENER, &asked, &r.version_info, &r.nonce, None);
    let lease = answer["lease"].as_str().unwrap();
    let (status, _) = admin(
        &cp,
        Method::DELETE,
        &format!("/v1/registrations/{lease}"),
        Some(TOKEN),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let r = response(&mut stream).await;
    assert_eq!(shapes(&listeners(&r)), expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_empty_certificate_provider_instance_is_refused_by_name() {
    let refused = ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .certificate_provider_instance(" ")
        .start()
        .await;
    match refused {
        Err(StartError::Option(e)) => assert_eq!(e.field(), "certificate_provider_instance"),
        other => panic!("started: {:?}", other.map(|_| ())),
    }
}
