//! `sinew control-plane` and `sinew check`.

use crate::args::ControlPlane as Options;
use crate::output;
use sinew_control_plane::{ControlPlane, Limits, check_mesh_file};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// The longest token file read: a token is a line, and a file that is not
/// (a log, a device) should fail clearly rather than fill memory.
const MAX_TOKEN_BYTES: u64 = 4096;

/// Validates a mesh file; prints what it holds or the error, and warns
/// about served services open to any mTLS caller.
pub(crate) fn check(file: &Path) -> Result<ExitCode, String> {
    // Warnings first, from the file as parsed: they hold whether or not
    // the control plane can serve it.
    if let Ok(mesh) = sinew::config::MeshConfig::from_file(file) {
        for warning in open_services(&mesh) {
            output::eprint(&format!("{}: warning: {warning}\n", file.display()));
        }
    }
    match check_mesh_file(file) {
        Ok(mesh) => {
            let endpoints: usize = mesh.clusters.values().map(|c| c.endpoints.len()).sum();
            output::print(&format!(
                "{}: valid ({} services, {} clusters, {endpoints} static endpoints)\n",
                file.display(),
                mesh.services.len(),
                mesh.clusters.len()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            output::eprint(&format!("{}: {error}\n", file.display()));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A warning for each served service (one with an inbound block) that
/// takes mutual TLS callers (`mtls` strict, permissive, or not set) and
/// has no authorization policies: any workload of a trusted trust domain
/// may call it.
fn open_services(mesh: &sinew::config::MeshConfig) -> Vec<String> {
    mesh.services
        .iter()
        .filter_map(|(name, service)| {
            let inbound = service.inbound.as_ref()?;
            let mtls = inbound.mtls != Some(sinew::config::MtlsMode::Disabled);
            (mtls && inbound.authorization.is_empty()).then(|| {
                format!(
                    "services.{name}.inbound.authorization: none, so any workload of a trusted \
                     trust domain may call `{name}`"
                )
            })
        })
        .collect()
}

/// The token in `path`: its text, trimmed, at most
/// [`MAX_TOKEN_BYTES`] long.
fn read_token(path: &Path) -> Result<String, String> {
    let what = || format!("--token-file {}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_TOKEN_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", what()))?;
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(format!(
            "{}: over {MAX_TOKEN_BYTES} bytes; a token file holds one token",
            what()
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", what()))?;
    Ok(text.trim().to_owned())
}

/// Serves until interrupted.
pub(crate) async fn serve(options: Options) -> Result<ExitCode, String> {
    let mut builder = ControlPlane::builder()
        .xds_addr(options.xds)
        .admin_addr(options.admin)
        .limits(Limits {
            max_leases: options.max_leases,
            max_leases_per_cluster: options.max_leases_per_cluster,
            max_ads_connections: options.max_ads_connections,
            max_streams_per_connection: options.max_streams_per_connection,
            max_resource_names: options.max_resource_names,
            max_node_id_bytes: options.max_node_id_bytes,
            max_nack_message_bytes: options.max_nack_message_bytes,
            max_message_bytes: options.max_message_bytes,
            max_admin_connections: options.max_admin_connections,
            admin_read_timeout: options.admin_read_timeout,
        })
        .certificate_provider_instance(&options.certificate_provider_instance)
        .telemetry(sinew_control_plane::telemetry::TelemetryOptions {
            window: std::time::Duration::from_secs(options.telemetry_window as u64),
            max_edges: options.telemetry_max_edges,
            ..Default::default()
        });
    builder = builder.ca(sinew_control_plane::ca::CaOptions {
        trust_domain: options.trust_domain.clone(),
        dir: options.ca_dir.clone(),
        cert_file: options.ca_cert.clone(),
        key_file: options.ca_key.clone(),
        leaf_ttl: options.leaf_ttl,
        ..Default::default()
    });
    if let Some(mesh) = &options.mesh {
        builder = builder.mesh_file(mesh);
    }
    if let Some(store) = &options.store {
        builder = builder.registry_store(store);
    }
    let token = match &options.token_file {
        Some(path) => Some(read_token(path)?),
        None => std::env::var("SINEW_CONTROL_PLANE_TOKEN").ok(),
    };
    match (
        token.filter(|t| !t.is_empty()),
        options.allow_unauthenticated_writes,
    ) {
        (Some(token), _) => builder = builder.token(token),
        (None, true) => builder = builder.allow_unauthenticated_writes(),
        (None, false) => {
            output::eprint("sinew: no token: registration and other writes are refused\n");
        }
    }
    if options.insecure_xds {
        builder = builder.insecure_xds();
    }
    builder = builder.server_names(options.server_name.clone());
    for scope in &options.xds_scope {
        let (service, callees) = scope
            .split_once('=')
            .filter(|(s, _)| !s.trim().is_empty())
            .ok_or_else(|| format!("--xds-scope {scope}: expected SERVICE=CALLEE,..."))?;
        let callees = callees.split(',').map(str::trim).filter(|c| !c.is_empty());
        builder = builder.xds_scope(service.trim(), callees);
    }
    if options.allow_unauthenticated_reads {
        builder = builder.allow_unauthenticated_reads();
    }
    if options.admin_tls {
        builder = builder.admin_tls();
    }
    if options.allow_plaintext_admin {
        builder = builder.allow_plaintext_admin();
    }
    let control_plane = builder.start().await.map_err(|e| e.to_string())?;
    // A closed stdout does not stop the server: the banner is only news.
    output::print(&format!(
        "sinew control plane: xDS on {}, admin on {}://{}\n{}\n",
        control_plane.xds_addr(),
        if options.admin_tls { "https" } else { "http" },
        control_plane.admin_addr(),
        if options.insecure_xds {
            "xDS in plaintext (--insecure-xds)".to_owned()
        } else {
            format!(
                "xDS over mutual TLS as {}: clients present a certificate of the mesh's CA",
                control_plane.spiffe_id()
            )
        },
    ))?;
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for ctrl-c: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
