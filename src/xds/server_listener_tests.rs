//! Server Listeners (gRFC A36) in the client's state: subscribed next to
//! the services' Listeners, their transport kept per name, and a Listener
//! of the wrong shape for its subscription refused alone.

use super::resource::Kind;
use super::state::{ResourceState, State};
use crate::config::MtlsMode;
use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket::ConfigType};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use prost::Message;

const NAME: &str = "grpc/server?xds.resource.listening_address=127.0.0.1:50051";

fn server(name: &str, require: Option<bool>) -> Any {
    let transport_socket = require.map(|value| TransportSocket {
        name: "envoy.transport_sockets.tls".to_owned(),
        config_type: Some(ConfigType::TypedConfig(Any {
            type_url:
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
                    .to_owned(),
            value: DownstreamTlsContext {
                require_client_certificate: Some(BoolValue { value }),
                ..DownstreamTlsContext::default()
            }
            .encode_to_vec(),
        })),
    });
    let listener = Listener {
        name: name.to_owned(),
        filter_chains: vec![FilterChain {
            transport_socket,
            ..FilterChain::default()
        }],
        ..Listener::default()
    };
    Any {
        type_url: Kind::Listener.type_url().to_owned(),
        value: listener.encode_to_vec(),
    }
}

fn subscribed() -> State {
    let mut state = State::new("http://cp");
    state.watch("svc");
    assert!(state.watch_server(NAME));
    assert!(!state.watch_server(NAME), "a second watch is not new");
    let wanted = state.wanted();
    state.subscribe(&wanted, true);
    state
}

fn status(state: &State, name: &str) -> (ResourceState, Option<String>) {
    state
        .statuses()
        .into_iter()
        .find(|s| s.kind == Kind::Listener && s.name == name)
        .map(|s| (s.state, s.error))
        .unwrap_or((ResourceState::Requested, Some("not subscribed".to_owned())))
}

#[test]
fn the_server_listener_is_subscribed_and_its_transport_kept_per_name() {
    let mut state = subscribed();
    assert_eq!(
        state.names(Kind::Listener),
        vec![NAME.to_owned(), "svc".to_owned()]
    );
    assert_eq!(state.server_mtls(NAME), None, "nothing arrived yet");

    let strict = state.apply_response(Kind::Listener, "1", "n1", &[server(NAME, Some(true))]);
    assert_eq!(strict.rejected, None);
    assert_eq!(state.server_mtls(NAME), Some(MtlsMode::Strict));

    let plain = state.apply_response(Kind::Listener, "2", "n2", &[server(NAME, None)]);
    assert_eq!(plain.rejected, None);
    assert_eq!(plain.changed, vec![(Kind::Listener, NAME.to_owned())]);
    assert_eq!(state.server_mtls(NAME), Some(MtlsMode::Disabled));
}

#[test]
fn a_server_listener_that_cannot_be_honoured_is_nacked_alone_and_the_last_good_one_stays() {
    let mut state = subscribed();
    state.apply_response(Kind::Listener, "1", "n1", &[server(NAME, Some(true))]);
    // TLS without client certificates would be weaker than what the
    // control plane means by mTLS, and stronger than plaintext: refused.
    let applied = state.apply_response(Kind::Listener, "2", "n2", &[server(NAME, Some(false))]);
    assert!(
        applied.rejected.as_deref().is_some_and(|e| e.contains(
            "filter_chains[0].transport_socket.typed_config.require_client_certificate: must be true"
        )),
        "{:?}",
        applied.rejected
    );
    assert_eq!(status(&state, NAME).0, ResourceState::Nacked);
    assert_eq!(state.server_mtls(NAME), Some(MtlsMode::Strict));
}

#[test]
fn a_listener_of_the_wrong_shape_for_its_subscription_is_refused() {
    let mut state = subscribed();
    // A server-shaped Listener under a service's name, and a client's
    // Listener under the server's.
    let client = Any {
        type_url: Kind::Listener.type_url().to_owned(),
        value: Listener {
            name: NAME.to_owned(),
            api_listener: Some(ApiListener::default()),
            ..Listener::default()
        }
        .encode_to_vec(),
    };
    let applied = state.apply_response(Kind::Listener, "1", "n1", &[server("svc", None), client]);
    let rejected = applied.rejected.unwrap_or_default();
    assert!(
        rejected.contains("Listener svc: api_listener: missing"),
        "{rejected}"
    );
    assert!(
        rejected.contains(&format!("Listener {NAME}: api_listener")),
        "{rejected}"
    );
    assert_eq!(state.server_mtls(NAME), None);
}

#[test]
fn a_connection_waits_only_while_nothing_is_known_of_the_server_listener() {
    let mut state = State::new("http://cp");
    assert!(
        !state.server_pending(NAME),
        "not subscribed: nothing to wait for"
    );
    state.watch_server(NAME);
    assert!(state.server_pending(NAME), "subscribed, not sent yet");
    let wanted = state.wanted();
    state.subscribe(&wanted, true);
    assert!(state.server_pending(NAME));
    // Refused with no good value before: the mesh's own mode applies.
    state.apply_response(Kind::Listener, "1", "n1", &[server(NAME, Some(false))]);
    assert!(!state.server_pending(NAME));
    assert_eq!(state.server_mtls(NAME), None);
    state.apply_response(Kind::Listener, "2", "n2", &[server(NAME, None)]);
    assert!(!state.server_pending(NAME));
    assert_eq!(state.server_mtls(NAME), Some(MtlsMode::Disabled));
}

/// A plaintext server Listener whose connection manager holds an ALLOW
/// RBAC filter of one policy named `policy` (with a CEL condition when
/// `cel`, which gRPC and Sinew refuse), then the router.
fn with_rbac(policy: &str, cel: bool) -> Any {
    use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
    use envoy_types::pb::envoy::config::rbac::v3::{
        Permission, Policy, Principal, Rbac as Rules, permission, principal,
    };
    use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, HttpFilter, http_filter,
    };
    let rbac = Rbac {
        rules: Some(Rules {
            action: 0,
            policies: [(
                policy.to_owned(),
                Policy {
                    permissions: vec![Permission {
                        rule: Some(permission::Rule::Any(true)),
                    }],
                    principals: vec![Principal {
                        identifier: Some(principal::Identifier::Any(true)),
                    }],
                    condition: cel.then(Default::default),
                    ..Policy::default()
                },
            )]
            .into(),
            audit_logging_options: None,
        }),
        ..Rbac::default()
    };
    let typed = |type_url: &str, value: Vec<u8>| {
        Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: type_url.to_owned(),
            value,
        }))
    };
    let hcm = HttpConnectionManager {
        http_filters: vec![
            HttpFilter {
                name: "rbac".to_owned(),
                config_type: typed(
                    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    rbac.encode_to_vec(),
                ),
                ..HttpFilter::default()
            },
            HttpFilter {
                name: "router".to_owned(),
                config_type: typed(
                    "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                    Vec::new(),
                ),
                ..HttpFilter::default()
            },
        ],
        ..HttpConnectionManager::default()
    };
    let listener = Listener {
        name: NAME.to_owned(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "hcm".to_owned(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager".to_owned(),
                    value: hcm.encode_to_vec(),
                })),
            }],
            ..FilterChain::default()
        }],
        ..Listener::default()
    };
    Any {
        type_url: Kind::Listener.type_url().to_owned(),
        value: listener.encode_to_vec(),
    }
}

#[test]
fn the_server_listeners_rbac_policies_are_kept_and_a_refused_one_leaves_the_last_good_in_force() {
    let mut state = subscribed();
    assert!(
        state.server_authorization(NAME).is_none(),
        "nothing arrived yet"
    );
    let first = state.apply_response(Kind::Listener, "1", "n1", &[with_rbac("allow-all", false)]);
    assert_eq!(first.rejected, None);
    let names = |state: &State| {
        state.server_authorization(NAME).map(|p| {
            p.groups
                .iter()
                .flat_map(|g| g.policies.iter().map(|p| p.name.to_string()))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(names(&state), Some(vec!["allow-all".to_owned()]));

    let refused = state.apply_response(Kind::Listener, "2", "n2", &[with_rbac("cel", true)]);
    assert!(
        refused.rejected.as_deref().is_some_and(|e| e.contains(
            "filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules.policies[\"cel\"].condition: CEL is not supported"
        )),
        "{:?}",
        refused.rejected
    );
    assert_eq!(names(&state), Some(vec!["allow-all".to_owned()]));

    // A Listener without RBAC filters: policies in use, and none (open).
    let open = state.apply_response(Kind::Listener, "3", "n3", &[server(NAME, None)]);
    assert_eq!(open.rejected, None);
    assert_eq!(names(&state), Some(Vec::new()));
}

/// A server Listener refused with no good value before it: its policies
/// cannot be known, so every request is refused rather than let through.
#[test]
fn a_first_server_listener_refused_denies_every_request() {
    let mut state = subscribed();
    let refused = state.apply_response(Kind::Listener, "1", "n1", &[with_rbac("cel", true)]);
    assert!(refused.rejected.is_some());
    let policies = state.server_authorization(NAME);
    let denies_all = policies.as_ref().is_some_and(|p| {
        p.groups.len() == 1
            && p.groups[0].action == crate::config::PolicyAction::Allow
            && p.groups[0].policies.is_empty()
    });
    assert!(denies_all, "{policies:?}");
    // A good one then takes over.
    let good = state.apply_response(Kind::Listener, "2", "n2", &[with_rbac("allow-all", false)]);
    assert_eq!(good.rejected, None);
    assert!(
        state
            .server_authorization(NAME)
            .is_some_and(|p| p.groups[0].policies.len() == 1)
    );
}
