//! The rule tying an xDS client's node to its certificate, over mutual
//! TLS: the node's `cluster` names the service of the certificate's SPIFFE
//! ID (`reviews` for `spiffe://<td>/ns/<namespace>/sa/reviews`; the last
//! path segment for an ID of another shape). A client can thus not pass
//! for another service: what it is sent, and what the admin API shows of
//! it, follow the identity it proved. The node's `id` stays free (one per
//! replica); the first request of a stream must carry the node.

use envoy_types::pb::envoy::config::core::v3::Node;
use tonic::Status;

/// The service a SPIFFE ID names.
pub(crate) fn service_of(spiffe_id: &str) -> &str {
    let path = spiffe_id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split_once('/'))
        .map_or("", |(_, path)| path);
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["ns", _, "sa", service] => service,
        [.., last] => last,
        [] => "",
    }
}

/// `Ok` when `node` may speak for `spiffe_id`; `PERMISSION_DENIED`
/// naming the field otherwise.
pub(crate) fn check(spiffe_id: &str, node: Option<&Node>) -> Result<(), Status> {
    let service = service_of(spiffe_id);
    let Some(node) = node else {
        return Err(Status::permission_denied(format!(
            "node: missing from the stream's first request; its cluster must be `{service}`, the service of the client certificate ({spiffe_id})"
        )));
    };
    if service.is_empty() || node.cluster != service {
        return Err(Status::permission_denied(format!(
            "node.cluster: `{}` is not `{service}`, the service of the client certificate ({spiffe_id})",
            crate::limits::truncate(&node.cluster, 256)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check, service_of};
    use envoy_types::pb::envoy::config::core::v3::Node;

    #[test]
    fn the_node_cluster_must_name_the_certificate_service() {
        assert_eq!(service_of("spiffe://td/ns/shop/sa/cart"), "cart");
        assert_eq!(
            service_of("spiffe://td/sinew/control-plane"),
            "control-plane"
        );
        assert_eq!(service_of("spiffe://td"), "");
        let node = |cluster: &str| Node {
            id: "cart-1".to_owned(),
            cluster: cluster.to_owned(),
            ..Node::default()
        };
        assert!(check("spiffe://td/ns/shop/sa/cart", Some(&node("cart"))).is_ok());
        let refused = check("spiffe://td/ns/shop/sa/cart", Some(&node("payments")));
        assert!(refused.is_err_and(|s| {
            s.code() == tonic::Code::PermissionDenied
                && s.message()
                    .starts_with("node.cluster: `payments` is not `cart`")
        }));
        assert!(
            check("spiffe://td/ns/shop/sa/cart", None)
                .is_err_and(|s| s.message().starts_with("node: missing"))
        );
        assert!(check("spiffe://td", Some(&node(""))).is_err());
    }
}
