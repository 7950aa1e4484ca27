//! Sinew's hand-written ClusterLoadAssignment reader against prost's
//! generated decoder. For any bytes prost decodes:
//!
//! - the reader can read them too (a wire-level error is a defect: an
//!   unknown group once made a valid assignment unreadable);
//! - on prost's own encoding of what it decoded, the reader accepts
//!   exactly when the assignment is valid, and reads the same endpoints
//!   (address, weight, locality, priority, health).
//!
//! The comparison is made on the re-encoding because the reader is more
//! lenient than protobuf's rules on encodings no encoder writes: two
//! members of one oneof (it reads the endpoint, prost keeps the last), a
//! singular message sent twice (prost merges them), a port varint past 32
//! bits (prost truncates it). The reference translation below is the one
//! `translate/endpoint.rs` documents, written over prost's structs.
#![no_main]

use envoy_types::pb::envoy::config::core::v3::{HealthStatus, address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sinew::config::{EndpointConfig, Health, Locality};
use sinew::xds::fuzzing::assignment;
use std::net::{IpAddr, SocketAddr};

fn reference(cla: &ClusterLoadAssignment) -> Result<Vec<EndpointConfig>, String> {
    let mut groups = Vec::new();
    for (i, group) in cla.endpoints.iter().enumerate() {
        let mut endpoints = Vec::new();
        for (j, lb) in group.lb_endpoints.iter().enumerate() {
            let at = format!("endpoints[{i}].lb_endpoints[{j}]");
            let weight = lb.load_balancing_weight.map_or(1, |w| w.value);
            if weight == 0 {
                return Err(format!("{at}: weight 0"));
            }
            let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &lb.host_identifier else {
                return Err(format!("{at}: no endpoint"));
            };
            let Some(address::Address::SocketAddress(sa)) =
                e.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                return Err(format!("{at}: no socket address"));
            };
            let ip: IpAddr = sa.address.parse().map_err(|_| format!("{at}: not an IP"))?;
            let port = match sa.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p @ 1..=65535)) => p as u16,
                _ => return Err(format!("{at}: no port")),
            };
            let health = match HealthStatus::try_from(lb.health_status) {
                Ok(HealthStatus::Unknown | HealthStatus::Healthy) => Health::Healthy,
                Ok(HealthStatus::Draining) => Health::Draining,
                _ => Health::Unhealthy,
            };
            endpoints.push((SocketAddr::new(ip, port), weight, health));
        }
        let locality = group
            .locality
            .as_ref()
            .map_or_else(Locality::default, |l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
            });
        let weight = group.load_balancing_weight.map(|w| w.value);
        groups.push((locality, weight, group.priority, endpoints));
    }
    let weighted = groups.iter().any(|g| g.1.is_some());
    let mut out = Vec::new();
    for (locality, weight, priority, endpoints) in groups {
        let locality_weight = weight.unwrap_or(1);
        if weighted && locality_weight == 0 {
            continue;
        }
        let sum: u64 = endpoints.iter().map(|e| u64::from(e.1)).sum();
        for (address, own, health) in endpoints {
            let weight = if weighted {
                let scaled = u64::from(locality_weight) * u64::from(own) * 1000 / sum.max(1);
                scaled.clamp(1, 1_000_000) as u32
            } else {
                own.min(1_000_000)
            };
            out.push(EndpointConfig {
                address: address.to_string(),
                weight,
                locality: locality.clone(),
                priority,
                health,
                metadata: Default::default(),
            });
        }
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let read = assignment(data);
    let Ok(cla) = ClusterLoadAssignment::decode(data) else {
        return;
    };
    if let Err(e) = &read {
        let wire = [
            "wire type",
            "truncated",
            "varint",
            "length",
            "field number",
            "group",
        ];
        assert!(
            !wire.iter().any(|w| e.contains(w)),
            "the reader cannot read what prost decodes: {e}"
        );
    }
    let read = assignment(&cla.encode_to_vec());
    match (reference(&cla), read) {
        (Ok(expected), Ok((name, endpoints))) => {
            assert_eq!(name, cla.cluster_name);
            assert_eq!(endpoints, expected, "the reader and prost disagree");
        }
        (Err(why), Ok(_)) => panic!("the reader accepts an invalid assignment ({why})"),
        (Ok(_), Err(e)) => panic!("the reader refuses a valid assignment: {e}"),
        (Err(_), Err(_)) => {}
    }
});
