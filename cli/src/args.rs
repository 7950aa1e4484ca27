//! The command line, declared with clap: help for each subcommand, shell
//! completions, and errors that name the flag. The checks on values live
//! in `values.rs`.

use crate::values;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Call services through a Sinew mesh, see what a client sees from its
/// control plane, and run one.
#[derive(Debug, Parser)]
#[command(name = "sinew", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Call(Call),
    Config(Config),
    ControlPlane(ControlPlane),
    Check(Check),
    Completions(Completions),
}

/// Where the configuration comes from: one of the two.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Source {
    /// The xDS control plane to ask (http://host:port).
    #[arg(long, value_name = "URL", value_parser = values::control_plane_url)]
    pub(crate) control_plane: Option<String>,
    /// A gRPC xDS bootstrap file naming the control planes.
    #[arg(long, value_name = "FILE")]
    pub(crate) bootstrap: Option<PathBuf>,
}

/// Send requests through the mesh to a service: how many each endpoint
/// served, and every failure with its reason.
///
/// Exits 1 if any request failed.
#[derive(Debug, Args)]
// As before clap: a flag given twice takes its last value.
#[command(args_override_self = true)]
pub(crate) struct Call {
    /// The service to call, by its mesh name.
    #[arg(value_parser = values::service)]
    pub(crate) service: String,
    #[command(flatten)]
    pub(crate) source: Source,
    /// How many requests to send.
    #[arg(long, value_name = "N", default_value = "1", value_parser = values::at_least_one)]
    pub(crate) count: usize,
    /// How many requests are in flight at a time.
    #[arg(long, value_name = "C", default_value = "1", value_parser = values::concurrency)]
    pub(crate) concurrency: usize,
    /// The HTTP request's path (and query).
    #[arg(long, value_name = "/PATH", default_value = "/", value_parser = values::request_path)]
    pub(crate) path: String,
    /// Make a unary gRPC call to this method instead, with raw message
    /// bytes.
    #[arg(long, value_name = "/package.Service/Method", value_parser = values::grpc_method)]
    pub(crate) grpc: Option<http::uri::PathAndQuery>,
    /// The gRPC request message, in hex (protobuf wire format).
    #[arg(long, value_name = "HEX", requires = "grpc", value_parser = values::hex)]
    pub(crate) data_hex: Option<values::HexBytes>,
    /// The most bytes a response body (or gRPC message) may have; a larger
    /// one fails that request.
    #[arg(long, value_name = "BYTES", default_value_t = values::DEFAULT_MAX_BODY,
          value_parser = values::at_least_one)]
    pub(crate) max_body_bytes: usize,
    /// How long (in seconds) to wait for the configuration.
    #[arg(long, value_name = "SECONDS", default_value = "15", value_parser = values::wait)]
    pub(crate) wait: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Send nothing: print what the mesh would do with the request (its
    /// route, the split with each cluster's chance, the endpoints and
    /// their state, the timeout, retries, breaker, thresholds and faults).
    /// Exits 1 if the request cannot be routed.
    #[arg(long, conflicts_with_all = ["json", "grpc"])]
    pub(crate) explain: bool,
    /// Print each request's decision report: the configuration version,
    /// route and cluster, and each attempt with its endpoint, reason,
    /// timing and result.
    #[arg(long)]
    pub(crate) report: bool,
}

impl Call {
    /// The gRPC request message (empty unless `--data-hex` says otherwise).
    pub(crate) fn data(&self) -> &[u8] {
        self.data_hex.as_ref().map_or(&[], |d| d.0.as_slice())
    }
}

/// Print, as JSON, what a client of some services sees from the control
/// plane: each resource's version, ACK or NACK, last error, and the
/// connection.
#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub(crate) struct Config {
    /// The services whose configuration to fetch.
    #[arg(required = true, value_name = "SERVICE")]
    pub(crate) services: Vec<String>,
    #[command(flatten)]
    pub(crate) source: Source,
    /// How long (in seconds) to wait for the configuration.
    #[arg(long, value_name = "SECONDS", default_value = "15", value_parser = values::wait)]
    pub(crate) wait: Duration,
}

/// Serve xDS from a mesh file (reloaded when it changes) and registered
/// instances, and the admin and registration API.
///
/// Writes need the token in --token-file (or the environment's
/// SINEW_CONTROL_PLANE_TOKEN); without one they are refused.
#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub(crate) struct ControlPlane {
    /// The mesh file to serve.
    #[arg(long, value_name = "FILE")]
    pub(crate) mesh: Option<PathBuf>,
    /// Where to serve xDS.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:18000")]
    pub(crate) xds: SocketAddr,
    /// Where to serve the admin and registration API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:18001")]
    pub(crate) admin: SocketAddr,
    /// Where registrations are kept.
    #[arg(long, value_name = "FILE")]
    pub(crate) store: Option<PathBuf>,
    /// A file holding the token that writes need.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// With no token, take writes from anyone.
    #[arg(long)]
    pub(crate) allow_unauthenticated_writes: bool,
    /// Serve xDS in plaintext to anyone, instead of mutual TLS with
    /// certificates from the mesh's CA (local development only).
    #[arg(long)]
    pub(crate) insecure_xds: bool,
    /// Name these hosts (DNS names or IPs) in the control plane's
    /// certificate, for clients that check the host they dial.
    #[arg(long, value_name = "HOST")]
    pub(crate) server_name: Vec<String>,
    /// Scope xDS: a client whose certificate names SERVICE sees only the
    /// services listed (and their clusters); repeat per service.
    #[arg(long, value_name = "SERVICE=CALLEE,...")]
    pub(crate) xds_scope: Vec<String>,
    /// Let anyone read the admin API (services, clients, registrations).
    #[arg(long)]
    pub(crate) allow_unauthenticated_reads: bool,
    /// Serve the admin API over TLS (required off loopback).
    #[arg(long)]
    pub(crate) admin_tls: bool,
    /// Allow a plaintext admin API off loopback.
    #[arg(long)]
    pub(crate) allow_plaintext_admin: bool,
    /// Leases in the whole registry; more registrations get 429.
    #[arg(long, value_name = "N", default_value = "100000", value_parser = values::at_least_one)]
    pub(crate) max_leases: usize,
    /// Leases in one cluster.
    #[arg(long, value_name = "N", default_value = "10000", value_parser = values::at_least_one)]
    pub(crate) max_leases_per_cluster: usize,
    /// ADS connections at once; one more is closed at once.
    #[arg(long, value_name = "N", default_value = "10000", value_parser = values::at_least_one)]
    pub(crate) max_ads_connections: usize,
    /// Concurrent ADS streams on one connection.
    #[arg(long, value_name = "N", default_value = "4", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) max_streams_per_connection: u32,
    /// Resource names in one discovery request.
    #[arg(long, value_name = "N", default_value = "10000", value_parser = values::at_least_one)]
    pub(crate) max_resource_names: usize,
    /// Bytes of a client's node id kept and shown.
    #[arg(long, value_name = "BYTES", default_value = "256", value_parser = values::at_least_one)]
    pub(crate) max_node_id_bytes: usize,
    /// Bytes of a NACK's message kept and logged.
    #[arg(long, value_name = "BYTES", default_value = "1024", value_parser = values::at_least_one)]
    pub(crate) max_nack_message_bytes: usize,
    /// The largest ADS message sent or accepted (Sinew's clients accept 64 MiB).
    #[arg(long, value_name = "BYTES", default_value = "67108864", value_parser = values::at_least_one)]
    pub(crate) max_message_bytes: usize,
    /// Admin API connections at once.
    #[arg(long, value_name = "N", default_value = "256", value_parser = values::at_least_one)]
    pub(crate) max_admin_connections: usize,
    /// Seconds of pushed telemetry kept per edge for /v1/graph and the dashboard (10 s buckets).
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = values::at_least_one)]
    pub(crate) telemetry_window: usize,
    /// Edges kept in the telemetry window; past it the edge updated longest ago is dropped.
    #[arg(long, value_name = "N", default_value = "1024", value_parser = values::at_least_one)]
    pub(crate) telemetry_max_edges: usize,
    /// Seconds an admin API client may take to send its headers, then its body.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = values::wait)]
    pub(crate) admin_read_timeout: std::time::Duration,
    /// The CA's trust domain: workloads are spiffe://NAME/ns/NAMESPACE/sa/SERVICE.
    #[arg(long, value_name = "NAME", default_value = "cluster.local", value_parser = values::trust_domain)]
    pub(crate) trust_domain: String,
    /// Where the CA keeps its root and bootstrap tokens (made 0700); without it, a new root at every start.
    #[arg(long, value_name = "DIR")]
    pub(crate) ca_dir: Option<PathBuf>,
    /// A CA certificate (PEM) to sign with instead of a generated root.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// The key (PEM) of --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub(crate) ca_key: Option<PathBuf>,
    /// How long the leaves the CA signs are valid: 1m to 30d.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = values::leaf_ttl)]
    pub(crate) leaf_ttl: std::time::Duration,
    /// The certificate provider instance served TLS contexts name: a key
    /// of the workloads' bootstrap `certificate_providers` (gRFC A29).
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub(crate) certificate_provider_instance: String,
}

/// Validate a mesh file offline, with the control plane's errors.
#[derive(Debug, Args)]
pub(crate) struct Check {
    /// The mesh file.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

/// Print a shell's completion script for sinew.
///
/// bash: `source <(sinew completions bash)` (in ~/.bashrc)
///
/// zsh: `sinew completions zsh > "${fpath[1]}/_sinew"`
///
/// fish: `sinew completions fish > ~/.config/fish/completions/sinew.fish`
#[derive(Debug, Args)]
pub(crate) struct Completions {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sinew").chain(line.split_whitespace()))
    }

    #[test]
    fn the_declaration_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_calls_and_refuses_bad_flags() {
        let Ok(Cli {
            command: Some(Command::Call(call)),
        }) = parse(
            "call greeter --control-plane http://cp:1 --count 5 --concurrency 2 --grpc /a.B/C --data-hex 0a03",
        )
        else {
            unreachable!("a valid call")
        };
        assert_eq!((call.count, call.concurrency), (5, 2));
        assert_eq!(call.data(), [0x0a, 0x03]);
        assert_eq!(call.grpc.as_ref().map(|m| m.as_str()), Some("/a.B/C"));
        assert_eq!(call.max_body_bytes, values::DEFAULT_MAX_BODY);
        assert_eq!(call.wait, Duration::from_secs(15));

        let error = |line| parse(line).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error("call greeter").contains("--control-plane <URL>|--bootstrap <FILE>"));
        assert!(
            error("call greeter --bootstrap b.json --count x")
                .contains("invalid value 'x' for '--count <N>'")
        );
        assert!(
            error("call g --bootstrap b --grpc /a.B/C --data-hex 0g")
                .contains("'--data-hex <HEX>': `g` (at 2) is not a hex digit")
        );
        assert!(matches!(parse(""), Ok(Cli { command: None })));
        assert!(
            error("control-plane --leaf-ttl 59s").contains(
                "invalid value '59s' for '--leaf-ttl <DURATION>': must be from 1m to 30d"
            )
        );
        assert!(error("control-plane --ca-cert root.pem").contains("--ca-key <FILE>"));
        assert!(error("control-plane --trust-domain A").contains("'--trust-domain <NAME>'"));
    }

    #[test]
    fn a_flag_given_twice_takes_the_last_value() {
        let Ok(Cli {
            command: Some(Command::Call(call)),
        }) = parse("call greeter --bootstrap b --count 2 --count 3")
        else {
            unreachable!("a valid call")
        };
        assert_eq!(call.count, 3);
    }
}
