//! One xDS resource from raw bytes: the first byte picks the type
//! (Listener, RouteConfiguration, Cluster, ClusterLoadAssignment) and
//! whether it comes inside Envoy's `Resource` wrapper; the rest is the
//! encoded message. Decoding (prost's, or Sinew's own wire reader for
//! assignments), translation and the snapshot's checks never panic.
#![no_main]

use envoy_types::pb::envoy::service::discovery::v3::Resource;
use envoy_types::pb::google::protobuf::Any;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sinew::xds::Kind;
use sinew::xds::fuzzing::resource;

const WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let kind = Kind::ALL[usize::from(selector) % Kind::ALL.len()];
    let mut any = Any {
        type_url: kind.type_url().to_owned(),
        value: bytes.to_vec(),
    };
    if selector & 4 != 0 {
        let wrapped = Resource {
            name: "wrapped".to_owned(),
            resource: Some(any),
            ..Resource::default()
        };
        any = Any {
            type_url: WRAPPER.to_owned(),
            value: wrapped.encode_to_vec(),
        };
    }
    let _ = resource(kind, &any);
});
