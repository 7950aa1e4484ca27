//! Transport security as gRPC's proxyless clients and servers read it
//! (gRFC A29): certificates come from a certificate provider instance the
//! workload's bootstrap names (`certificate_providers`), never inline; the
//! control plane says only which instance, and which peers to accept.

use super::{UPSTREAM_TLS, pack, string_matcher};
use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateProviderPluginInstance, CertificateValidationContext, CommonTlsContext,
    DownstreamTlsContext, UpstreamTlsContext, common_tls_context::ValidationContextType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::google::protobuf::BoolValue;

const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// The certificate provider instance served by default: the name Istio's
/// proxyless gRPC bootstrap gives its provider.
pub const DEFAULT_CERTIFICATE_PROVIDER: &str = "default";

/// Both the workload's certificate and the roots it checks peers
/// against, from the bootstrap's provider instance `instance` (a
/// `file_watcher` provider holds both).
fn common(instance: &str, peers: &[String]) -> CommonTlsContext {
    let provider = || CertificateProviderPluginInstance {
        instance_name: instance.to_owned(),
        ..CertificateProviderPluginInstance::default()
    };
    // `match_subject_alt_names` is deprecated in Envoy's API for
    // `match_typed_subject_alt_names`, but it is the one gRPC reads
    // (C-core, Java and Go ignore the typed field, so a typed matcher
    // would let any certificate through), and Envoy refuses a context
    // holding both. An exact matcher there compares URI SANs too.
    #[allow(deprecated)]
    let validation = CertificateValidationContext {
        ca_certificate_provider_instance: Some(provider()),
        match_subject_alt_names: peers
            .iter()
            .map(|id| string_matcher(MatchPattern::Exact(id.clone())))
            .collect(),
        ..CertificateValidationContext::default()
    };
    CommonTlsContext {
        tls_certificate_provider_instance: Some(provider()),
        validation_context_type: Some(ValidationContextType::ValidationContext(validation)),
        ..CommonTlsContext::default()
    }
}

fn socket(any: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any)),
    }
}

/// A cluster's `UpstreamTlsContext`: mTLS with the provider's certificate
/// and roots, the endpoints' certificates matched on exactly these
/// SPIFFE IDs (none: any the roots vouch for).
pub(crate) fn upstream(identities: &[String], instance: &str) -> TransportSocket {
    let tls = UpstreamTlsContext {
        common_tls_context: Some(common(instance, identities)),
        ..UpstreamTlsContext::default()
    };
    socket(pack(UPSTREAM_TLS, &tls))
}

/// A server Listener's `DownstreamTlsContext`: STRICT mTLS, a client
/// certificate required and checked against the provider's roots. (gRPC
/// servers take no SAN matchers: who may call is authorization's part.)
pub(crate) fn downstream(instance: &str) -> TransportSocket {
    let tls = DownstreamTlsContext {
        common_tls_context: Some(common(instance, &[])),
        require_client_certificate: Some(BoolValue { value: true }),
        ..DownstreamTlsContext::default()
    };
    socket(pack(DOWNSTREAM_TLS, &tls))
}
