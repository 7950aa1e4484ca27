//! Whether a Cluster's endpoints are spoken to over mTLS (it has an
//! `UpstreamTlsContext`), and the identities they may present (its SAN
//! matchers).

use super::Invalid;
use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket::ConfigType};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, UpstreamTlsContext, common_tls_context::ValidationContextType,
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use prost::Message;

const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

/// `None` when the socket is plaintext (no typed config); otherwise the
/// endpoints are spoken to over mTLS, and these are the SPIFFE IDs they
/// may present (none: any the trust bundle vouches for). Only exact
/// matches on URI SANs (or on any SAN, in the older field) express an
/// identity; any other matcher is refused rather than widened or narrowed
/// silently. Where the certificate and roots come from (the certificate
/// provider instances of gRFC A29, in any of their current or deprecated
/// fields) is not read: Sinew's own identity and trust bundle serve
/// whichever instance a control plane names.
// `match_subject_alt_names` is deprecated in Envoy's API; control planes
// (Istio among them) still send it.
#[allow(deprecated)]
pub(crate) fn upstream(socket: &TransportSocket) -> Result<Option<Vec<String>>, Invalid> {
    let Some(ConfigType::TypedConfig(any)) = &socket.config_type else {
        // Without a config, the name says what the socket is: only the
        // plaintext one (or none) is plaintext; a TLS socket with nothing
        // to say how is refused, not taken for plaintext.
        return match socket.name.as_str() {
            "" | "envoy.transport_sockets.raw_buffer" | "raw_buffer" => Ok(None),
            other => Err(format!(
                "transport_socket: `{other}` without a typed_config is not supported"
            )),
        };
    };
    if any.type_url != UPSTREAM_TLS {
        return Err(format!(
            "transport_socket.typed_config: `{}` is not an UpstreamTlsContext",
            any.type_url
        ));
    }
    let tls = UpstreamTlsContext::decode(any.value.as_slice())
        .map_err(|e| format!("transport_socket.typed_config: cannot decode: {e}"))?;
    let at = "transport_socket.typed_config.common_tls_context";
    let validation = match tls
        .common_tls_context
        .and_then(|c| c.validation_context_type)
    {
        Some(ValidationContextType::ValidationContext(v)) => {
            (v, format!("{at}.validation_context"))
        }
        Some(ValidationContextType::CombinedValidationContext(c)) => (
            c.default_validation_context.unwrap_or_default(),
            format!("{at}.combined_validation_context.default_validation_context"),
        ),
        // Roots from a certificate provider instance (gRFC A29's
        // deprecated form) or none named: any identity the bundle vouches
        // for, as in the mesh file's `mtls: true`.
        Some(ValidationContextType::ValidationContextCertificateProviderInstance(_)) | None => {
            return Ok(Some(Vec::new()));
        }
        // Matchers held elsewhere (SDS) cannot be honoured: refused rather
        // than widened to any identity.
        Some(_) => {
            return Err(format!(
                "{at}.validation_context_type: only an inline validation context or a \
                 certificate provider instance is supported"
            ));
        }
    };
    let (v, at): (CertificateValidationContext, String) = validation;
    let mut ids = Vec::new();
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let at = format!("{at}.match_typed_subject_alt_names[{i}]");
        if SanType::try_from(m.san_type) != Ok(SanType::Uri) {
            return Err(format!(
                "{at}.san_type: only URI SANs (SPIFFE IDs) are supported"
            ));
        }
        ids.push(spiffe_id(m.matcher.as_ref(), &format!("{at}.matcher"))?);
    }
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        let at = format!("{at}.match_subject_alt_names[{i}]");
        ids.push(spiffe_id(Some(m), &at)?);
    }
    Ok(Some(ids))
}

fn spiffe_id(matcher: Option<&StringMatcher>, at: &str) -> Result<String, Invalid> {
    // Ignoring case would accept IDs an exact match refuses: refused
    // rather than narrowed silently.
    if matcher.is_some_and(|m| m.ignore_case) {
        return Err(format!(
            "{at}.ignore_case: SPIFFE IDs are matched exactly; a matcher ignoring case is not supported"
        ));
    }
    match matcher.and_then(|m| m.match_pattern.as_ref()) {
        Some(MatchPattern::Exact(id)) if id.starts_with("spiffe://") => Ok(id.clone()),
        _ => Err(format!(
            "{at}: only an exact match on a SPIFFE ID (spiffe://...) is supported"
        )),
    }
}
