//! `sinew control-plane` and `sinew check`.

use crate::args::ControlPlane as Options;
use sinew_control_plane::{ControlPlane, check_mesh_file};
use std::path::Path;
use std::process::ExitCode;

/// Validates a mesh file; prints what it holds or the error.
pub(crate) fn check(file: &str) -> ExitCode {
    match check_mesh_file(Path::new(file)) {
        Ok(mesh) => {
            let endpoints: usize = mesh.clusters.values().map(|c| c.endpoints.len()).sum();
            println!(
                "{file}: valid ({} services, {} clusters, {endpoints} static endpoints)",
                mesh.services.len(),
                mesh.clusters.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{file}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until interrupted.
pub(crate) async fn serve(options: Options) -> Result<ExitCode, String> {
    let mut builder = ControlPlane::builder()
        .xds_addr(options.xds)
        .admin_addr(options.admin);
    if let Some(mesh) = &options.mesh {
        builder = builder.mesh_file(mesh);
    }
    if let Some(store) = &options.store {
        builder = builder.registry_store(store);
    }
    let token = match &options.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {path}: {e}"))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("SINEW_CONTROL_PLANE_TOKEN").ok(),
    };
    match (token.filter(|t| !t.is_empty()), options.open_writes) {
        (Some(token), _) => builder = builder.token(token),
        (None, true) => builder = builder.allow_unauthenticated_writes(),
        (None, false) => {
            eprintln!("sinew: no token: registration and other writes are refused");
        }
    }
    let control_plane = builder.start().await.map_err(|e| e.to_string())?;
    println!(
        "sinew control plane: xDS on {}, admin on http://{}",
        control_plane.xds_addr(),
        control_plane.admin_addr()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for ctrl-c: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
