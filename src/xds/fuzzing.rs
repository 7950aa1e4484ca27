//! Entry points for the fuzz targets (`fuzz/` in the repository), behind
//! the `fuzzing` feature and hidden from the documentation: the
//! translation and the client state are crate-private, and this module
//! exposes them without widening the public API. Not a stable interface.

use super::resource::Kind;
use super::state::{State, check};
use super::translate::decode;
use crate::config::{Endpoint, EndpointConfig, MeshConfig};
use envoy_types::pb::google::protobuf::Any;

/// Decodes, translates and checks one resource as a response's would be:
/// its name, or the error that would NACK it.
pub fn resource(kind: Kind, any: &Any) -> Result<String, String> {
    let (name, resource) = decode(kind, any).map_err(|(_, e)| e)?;
    check(&name, &resource, &crate::classify::Classifiers::default())?;
    Ok(name)
}

/// The discovery client's state, fed responses without a stream.
#[derive(Debug)]
pub struct Client {
    state: State,
}

impl Client {
    /// A client watching `services`, subscribed to their Listeners.
    pub fn new<'a>(services: impl IntoIterator<Item = &'a str>) -> Self {
        let mut state = State::new("fuzz");
        for service in services {
            state.watch(service);
        }
        let wanted = state.wanted();
        state.subscribe(&wanted, false);
        Self { state }
    }

    /// Applies one response, then follows the subscriptions it implies,
    /// as the stream does. Returns the NACK's message, if any.
    pub fn apply(&mut self, kind: Kind, resources: &[Any]) -> Option<String> {
        let applied = self.state.apply_response(kind, "1", "n", resources);
        let wanted = self.state.wanted();
        self.state.subscribe(&wanted, false);
        applied.rejected
    }

    /// The configuration the client would put in force now.
    pub fn assemble(&mut self) -> MeshConfig {
        self.state.assemble()
    }
}

/// A ClusterLoadAssignment as Sinew's own wire reader reads it: its
/// cluster name and endpoints, or the error that would NACK it.
pub fn assignment(bytes: &[u8]) -> Result<(String, Vec<EndpointConfig>), String> {
    let (name, endpoints) = super::translate::assignment(bytes)?;
    Ok((name, endpoints.iter().map(Endpoint::to_config).collect()))
}
