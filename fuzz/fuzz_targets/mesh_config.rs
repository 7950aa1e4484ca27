//! A mesh file (YAML, or JSON when the first byte is odd) read into a
//! `MeshConfig` and validated into a snapshot. Neither may panic, and a
//! configuration that builds must survive the JSON round trip that the
//! fail-static cache makes (written, read back, built again).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinew::config::{MeshConfig, Snapshot};

fuzz_target!(|data: &[u8]| {
    let Some((&format, text)) = data.split_first() else {
        return;
    };
    let name = if format & 1 == 1 {
        "mesh.json"
    } else {
        "mesh.yaml"
    };
    let Ok(config) = MeshConfig::from_file_contents(name, text) else {
        return;
    };
    let Ok(snapshot) = Snapshot::build(config, 1) else {
        return;
    };
    let written = snapshot.to_config();
    let json = serde_json::to_string(&written).expect("a built configuration serializes");
    let read = MeshConfig::from_json(&json)
        .unwrap_or_else(|e| panic!("the cache's JSON does not read back: {e}\n{json}"));
    assert_eq!(
        read, written,
        "the JSON round trip changed the configuration"
    );
    if let Err(e) = Snapshot::build(read, 2) {
        panic!("a configuration that built does not build again from JSON: {e}\n{json}");
    }
});
