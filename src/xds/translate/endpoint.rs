use super::Invalid;
use super::wire::{Fields, Value, text, uint32_value};
use crate::config::{Endpoint, Health, Locality};
use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// One locality's endpoints as read, before weights are settled (a
/// locality's weight follows its endpoints on the wire).
struct Group {
    locality: Arc<Locality>,
    weight: Option<u32>,
    priority: u32,
    endpoints: Vec<(SocketAddr, u32, Health)>,
}

/// A ClusterLoadAssignment, read from its wire bytes: its cluster name and
/// its endpoints, with their localities, priorities and health. Locality
/// weights are folded into endpoint weights so that each locality's share
/// of traffic follows its weight (as gRPC's weighted target does) whatever
/// its number of endpoints.
pub(crate) fn assignment(bytes: &[u8]) -> Result<(String, Vec<Endpoint>), Invalid> {
    let mut name = String::new();
    let mut groups = Vec::new();
    let mut fields = Fields::new(bytes);
    while let Some(field) = fields.next_field() {
        match field? {
            (1, Value::Bytes(b)) => name = text(b)?.to_owned(),
            (2, Value::Bytes(b)) => {
                let i = groups.len();
                groups.push(group(b).map_err(|e| format!("endpoints[{i}].{e}"))?);
            }
            _ => {}
        }
    }
    let weighted = groups.iter().any(|g| g.weight.is_some());
    let mut endpoints = Vec::with_capacity(groups.iter().map(|g| g.endpoints.len()).sum());
    for g in groups {
        let locality_weight = g.weight.unwrap_or(1);
        if weighted && locality_weight == 0 {
            // gRPC drops localities of weight zero.
            continue;
        }
        let sum: u64 = g.endpoints.iter().map(|e| u64::from(e.1)).sum();
        for (address, own, health) in g.endpoints {
            let weight = if weighted {
                // The locality's weight shared among its endpoints by
                // theirs, scaled to keep precision in integers.
                // In 128 bits: two u32 weights and the scale overflow u64.
                let scaled =
                    u128::from(locality_weight) * u128::from(own) * 1000 / u128::from(sum.max(1));
                scaled.clamp(1, 1_000_000) as u32
            } else {
                own.min(1_000_000)
            };
            endpoints.push(Endpoint {
                address,
                weight,
                locality: g.locality.clone(),
                priority: g.priority,
                health,
                metadata: Default::default(),
            });
        }
    }
    Ok((name, endpoints))
}

/// A LocalityLbEndpoints.
fn group(bytes: &[u8]) -> Result<Group, Invalid> {
    let mut locality = Locality::default();
    let mut weight = None;
    let mut priority = 0;
    let mut endpoints = Vec::new();
    let mut fields = Fields::new(bytes);
    while let Some(field) = fields.next_field() {
        match field? {
            (1, Value::Bytes(b)) => {
                let mut inner = Fields::new(b);
                while let Some(f) = inner.next_field() {
                    match f.map_err(|e| format!("locality: {e}"))? {
                        (1, Value::Bytes(r)) => locality.region = text(r)?.to_owned(),
                        (2, Value::Bytes(z)) => locality.zone = text(z)?.to_owned(),
                        _ => {}
                    }
                }
            }
            (2, Value::Bytes(b)) => {
                let i = endpoints.len();
                endpoints.push(lb_endpoint(b).map_err(|e| format!("lb_endpoints[{i}].{e}"))?);
            }
            (3, Value::Bytes(b)) => weight = Some(uint32_value(b)?),
            (5, Value::Varint(p)) => priority = p as u32,
            _ => {}
        }
    }
    Ok(Group {
        locality: Arc::new(locality),
        weight,
        priority,
        endpoints,
    })
}

/// An LbEndpoint: its address, own weight and health.
fn lb_endpoint(bytes: &[u8]) -> Result<(SocketAddr, u32, Health), Invalid> {
    let mut address = None;
    let mut weight = 1;
    let mut health = 0;
    let mut fields = Fields::new(bytes);
    while let Some(field) = fields.next_field() {
        match field? {
            (1, Value::Bytes(b)) => address = Some(endpoint_address(b)?),
            (2, Value::Varint(h)) => health = h as i32,
            (4, Value::Bytes(b)) => {
                weight = uint32_value(b)?;
                if weight == 0 {
                    return Err("load_balancing_weight: must be at least 1".to_owned());
                }
            }
            _ => {}
        }
    }
    let address = address.ok_or_else(|| "endpoint: missing".to_owned())?;
    let health = match HealthStatus::try_from(health) {
        Ok(HealthStatus::Unknown | HealthStatus::Healthy) => Health::Healthy,
        Ok(HealthStatus::Draining) => Health::Draining,
        _ => Health::Unhealthy,
    };
    Ok((address, weight, health))
}

/// An Endpoint's `address.socket_address`, as an IP and port.
fn endpoint_address(bytes: &[u8]) -> Result<SocketAddr, Invalid> {
    let mut socket = None;
    let mut fields = Fields::new(bytes);
    while let Some(field) = fields.next_field() {
        if let (1, Value::Bytes(address)) = field? {
            let mut inner = Fields::new(address);
            while let Some(f) = inner.next_field() {
                if let (1, Value::Bytes(s)) = f? {
                    socket = Some(s);
                }
            }
        }
    }
    let socket = socket.ok_or_else(|| "endpoint.address.socket_address: missing".to_owned())?;
    let mut ip = None;
    let mut port = None;
    let mut fields = Fields::new(socket);
    while let Some(field) = fields.next_field() {
        match field? {
            (2, Value::Bytes(a)) => {
                let a = text(a)?;
                ip = Some(a.parse::<IpAddr>().map_err(|_| {
                    format!("endpoint.address.socket_address.address: `{a}` is not an IP address")
                })?);
            }
            (3, Value::Varint(p)) => port = Some(p),
            _ => {}
        }
    }
    let ip = ip.ok_or_else(|| "endpoint.address.socket_address.address: missing".to_owned())?;
    match port {
        Some(p @ 1..=65535) => Ok(SocketAddr::new(ip, p as u16)),
        _ => Err(
            "endpoint.address.socket_address.port_value: must be between 1 and 65535".to_owned(),
        ),
    }
}

/// The assignment's cluster name alone, to name it in an error.
pub(crate) fn assignment_name(bytes: &[u8]) -> Option<String> {
    let mut fields = Fields::new(bytes);
    while let Some(Ok(field)) = fields.next_field() {
        if let (1, Value::Bytes(b)) = field {
            return text(b).ok().map(str::to_owned);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{
        Address, SocketAddress, address, socket_address::PortSpecifier,
    };
    use envoy_types::pb::envoy::config::endpoint::v3::{
        ClusterLoadAssignment, Endpoint as PbEndpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
    };
    use prost::Message;

    /// Found by the `xds_assignment` fuzz target: an unknown field of the
    /// group wire type, which protobuf decoders skip, made a valid
    /// assignment unreadable (`unsupported wire type 3`).
    #[test]
    fn unknown_groups_are_skipped() {
        let socket = SocketAddress {
            address: "10.0.0.1".to_owned(),
            port_specifier: Some(PortSpecifier::PortValue(80)),
            ..SocketAddress::default()
        };
        let cla = ClusterLoadAssignment {
            cluster_name: "pool".to_owned(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(PbEndpoint {
                        address: Some(Address {
                            address: Some(address::Address::SocketAddress(socket)),
                        }),
                        ..PbEndpoint::default()
                    })),
                    ..LbEndpoint::default()
                }],
                ..LocalityLbEndpoints::default()
            }],
            ..ClusterLoadAssignment::default()
        };
        let mut bytes = cla.encode_to_vec();
        // Field 7, a group holding field 1 = 1.
        bytes.extend_from_slice(&[0x3b, 0x08, 0x01, 0x3c]);
        assert!(ClusterLoadAssignment::decode(bytes.as_slice()).is_ok());
        let read = assignment(&bytes).map(|(name, e)| (name, e.len()));
        assert_eq!(read, Ok(("pool".to_owned(), 1)));
    }
}
