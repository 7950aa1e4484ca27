//! The discovery client fed a sequence of responses. The input is a list
//! of records, `[type][length: u16 LE][encoded resource]`; consecutive
//! records of one type make one response. After each response the
//! configuration the client assembles must be accepted by the mesh: the
//! client ACKs what it checked, so a configuration the mesh then refuses
//! would be acknowledged yet never put in force.
#![no_main]

use envoy_types::pb::google::protobuf::Any;
use libfuzzer_sys::fuzz_target;
use sinew::mesh::Mesh;
use sinew::xds::Kind;
use sinew::xds::fuzzing::Client;
use std::sync::OnceLock;

/// The services the client watches: those of the seed mesh.
const SERVICES: [&str; 2] = ["reviews", "ratings"];

fn mesh() -> &'static Mesh {
    static MESH: OnceLock<Mesh> = OnceLock::new();
    MESH.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(Mesh::builder().build())
            .expect("an empty mesh")
    })
}

/// The records of the input, grouped into responses.
fn responses(mut data: &[u8]) -> Vec<(Kind, Vec<Any>)> {
    let mut responses: Vec<(Kind, Vec<Any>)> = Vec::new();
    while let [selector, lo, hi, rest @ ..] = data {
        let kind = Kind::ALL[usize::from(*selector) % Kind::ALL.len()];
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        let (value, rest) = rest.split_at(len);
        data = rest;
        let any = Any {
            type_url: kind.type_url().to_owned(),
            value: value.to_vec(),
        };
        match responses.last_mut() {
            Some((k, resources)) if *k == kind => resources.push(any),
            _ => responses.push((kind, vec![any])),
        }
    }
    responses
}

fuzz_target!(|data: &[u8]| {
    let mut client = Client::new(SERVICES);
    for (kind, resources) in responses(data) {
        let _ = client.apply(kind, &resources);
        let config = client.assemble();
        if let Err(e) = mesh().apply(config.clone()) {
            panic!("the mesh refuses what the client accepted: {e}\n{config:#?}");
        }
    }
});
