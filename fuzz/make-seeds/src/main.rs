//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/<target>/`:
//! the seed mesh file as YAML and JSON, the xDS resources the control
//! plane makes from it, and real deadline header values.
//!
//! Run from the repository: `cargo run --manifest-path fuzz/Cargo.toml -p sinew-fuzz-seeds`.

use sinew::config::{MeshConfig, Snapshot};
use sinew::deadline::encode_grpc_timeout;
use sinew::xds::Kind;
use sinew_control_plane::generate;
use std::path::{Path, PathBuf};
use std::time::Duration;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("make-seeds/mesh.yaml"))?;
    let mesh = MeshConfig::from_yaml(&text)?;
    Snapshot::build(mesh.clone(), 1)?;
    let seeds = root.join("seeds");

    // Mesh files: the first byte picks YAML (even) or JSON (odd).
    let dir = clean(&seeds.join("mesh_config"))?;
    write(&dir, "seed-mesh.yaml", 0, text.as_bytes())?;
    write(
        &dir,
        "seed-mesh.json",
        1,
        serde_json::to_string_pretty(&mesh)?.as_bytes(),
    )?;
    let example = std::fs::read(root.join("../examples/mesh.yaml"))?;
    write(&dir, "example-mesh.yaml", 0, &example)?;

    // Resources: the first byte picks the type (and, with 4 set, Envoy's
    // Resource wrapper); the client's input is `[type][u16 LE length][bytes]`
    // records, here the whole mesh in the order the client subscribes.
    let resources = generate::resources(&mesh);
    let one = clean(&seeds.join("xds_resource"))?;
    let _ = clean(&seeds.join("xds_client"))?;
    let mut everything = Vec::new();
    for kind in Kind::ALL {
        for (name, encoded) in resources.get(kind.type_url()).into_iter().flatten() {
            let bytes = &encoded.any.value;
            let file = format!("{}-{name}", kind.api_name());
            write(&one, &file, kind as u8, bytes)?;
            if kind == Kind::Cluster {
                write(&one, &format!("{file}-wrapped"), kind as u8 | 4, bytes)?;
            }
            everything.push(kind as u8);
            everything.extend_from_slice(&u16::try_from(bytes.len())?.to_le_bytes());
            everything.extend_from_slice(bytes);
        }
    }
    std::fs::write(seeds.join("xds_client/seed-mesh"), everything)?;

    // Deadline headers: the first byte's bit 0 picks `grpc-timeout` (0) or
    // `sinew-timeout-ms` (1); bit 1 makes the call sent on plain HTTP.
    let dir = clean(&seeds.join("deadline_header"))?;
    let budgets = [
        Duration::from_nanos(1),
        Duration::from_millis(250),
        Duration::from_secs(30),
        Duration::from_secs(200_000_000),
    ];
    for (i, budget) in budgets.iter().enumerate() {
        let value = encode_grpc_timeout(*budget);
        write(&dir, &format!("grpc-timeout-{i}"), 0, value.as_bytes())?;
    }
    for (i, value) in ["1H", "99999999S", "5M"].iter().enumerate() {
        write(
            &dir,
            &format!("grpc-timeout-to-http-{i}"),
            2,
            value.as_bytes(),
        )?;
    }
    write(&dir, "sinew-timeout-ms", 1, b"1200")?;
    write(&dir, "sinew-timeout-ms-max", 3, b"9999999999999999999")?;
    Ok(())
}

fn clean(dir: &Path) -> Result<PathBuf, Error> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_owned())
}

fn write(dir: &Path, name: &str, first: u8, rest: &[u8]) -> Result<(), Error> {
    let mut bytes = vec![first];
    bytes.extend_from_slice(rest);
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}
