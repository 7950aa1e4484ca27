use super::Invalid;
use crate::config::{Endpoint as SinewEndpoint, Health, Locality};
use envoy_types::pb::envoy::config::core::v3::{
    HealthStatus, address, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use std::net::{IpAddr, SocketAddr};

/// A ClusterLoadAssignment's endpoints, with their localities, priorities
/// and health. Locality weights are folded into endpoint weights so that
/// each locality's share of traffic follows its weight (as gRPC's weighted
/// target does) whatever its number of endpoints.
pub(crate) fn assignment(a: ClusterLoadAssignment) -> Result<Vec<SinewEndpoint>, Invalid> {
    let weighted_localities = a
        .endpoints
        .iter()
        .any(|l| l.load_balancing_weight.is_some());
    let mut endpoints = Vec::with_capacity(a.endpoints.iter().map(|l| l.lb_endpoints.len()).sum());
    for (i, group) in a.endpoints.into_iter().enumerate() {
        let at = format!("endpoints[{i}]");
        let locality = group
            .locality
            .map(|l| Locality {
                region: l.region,
                zone: l.zone,
            })
            .unwrap_or_default();
        let locality_weight = group.load_balancing_weight.map_or(1, |w| w.value);
        if weighted_localities && locality_weight == 0 {
            // gRPC drops localities of weight zero.
            continue;
        }
        let sum: u64 = group
            .lb_endpoints
            .iter()
            .map(|e| {
                u64::from(
                    e.load_balancing_weight
                        .as_ref()
                        .map_or(1, |w| w.value)
                        .max(1),
                )
            })
            .sum();
        for (j, e) in group.lb_endpoints.into_iter().enumerate() {
            let at = format!("{at}.lb_endpoints[{j}]");
            let own = e.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            if own == 0 {
                return Err(format!("{at}.load_balancing_weight: must be at least 1"));
            }
            let Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)) = e.host_identifier else {
                return Err(format!("{at}.endpoint: missing"));
            };
            let address =
                socket_address(&endpoint).map_err(|m| format!("{at}.endpoint.address.{m}"))?;
            let weight = if weighted_localities {
                // The locality's weight shared among its endpoints by
                // theirs, scaled to keep precision in integers.
                let scaled = u64::from(locality_weight) * u64::from(own) * 1000 / sum.max(1);
                scaled.clamp(1, 1_000_000) as u32
            } else {
                own.min(1_000_000)
            };
            let health = match HealthStatus::try_from(e.health_status) {
                Ok(HealthStatus::Unknown | HealthStatus::Healthy) => Health::Healthy,
                Ok(HealthStatus::Draining) => Health::Draining,
                _ => Health::Unhealthy,
            };
            endpoints.push(SinewEndpoint {
                address,
                weight,
                locality: locality.clone(),
                priority: group.priority,
                health,
                metadata: Default::default(),
            });
        }
    }
    Ok(endpoints)
}

fn socket_address(
    endpoint: &envoy_types::pb::envoy::config::endpoint::v3::Endpoint,
) -> Result<SocketAddr, Invalid> {
    let Some(address::Address::SocketAddress(socket)) =
        endpoint.address.as_ref().and_then(|a| a.address.as_ref())
    else {
        return Err("socket_address: missing".to_owned());
    };
    let ip: IpAddr = socket.address.parse().map_err(|_| {
        format!(
            "socket_address.address: `{}` is not an IP address",
            socket.address
        )
    })?;
    let port = match socket.port_specifier {
        Some(PortSpecifier::PortValue(p)) if (1..=65535).contains(&p) => p as u16,
        _ => return Err("socket_address.port_value: must be between 1 and 65535".to_owned()),
    };
    Ok(SocketAddr::new(ip, port))
}
