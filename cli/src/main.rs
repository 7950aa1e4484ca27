//! `sinew`: call services through the mesh, and see what a client sees
//! from its control plane. Run `sinew help`.

mod args;
mod body;
mod call;
mod config;
mod control_plane;
mod output;
mod values;

use args::{Cli, Command, Source};
use clap::{CommandFactory, Parser};
use sinew::mesh::Mesh;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    // Clap prints help, the version and usage errors (exit 2) itself, and
    // ignores a closed stdout while doing so.
    let cli = Cli::parse();
    let result = match cli.command {
        // As `sinew help`, on stdout and successfully.
        None => {
            output::print(&Cli::command().render_help().to_string()).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Completions(completions)) => {
            let mut script = Vec::new();
            clap_complete::generate(completions.shell, &mut Cli::command(), "sinew", &mut script);
            output::print(&String::from_utf8_lossy(&script)).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Check(check)) => control_plane::check(&check.file),
        Some(Command::Call(call)) => block_on(call::run(call)),
        Some(Command::Config(config)) => block_on(config::run(config)),
        Some(Command::ControlPlane(options)) => block_on(control_plane::serve(options)),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            output::eprint(&format!("sinew: {message}\n"));
            ExitCode::from(2)
        }
    }
}

/// Runs a command that talks to the network on a tokio runtime.
fn block_on(command: impl Future<Output = Result<ExitCode, String>>) -> Result<ExitCode, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(command)
}

/// A mesh whose configuration comes from `source`.
async fn mesh(source: &Source, wait: Duration) -> Result<Mesh, String> {
    // A one-off call is no workload: its requests are not pushed as the
    // bootstrap's service's traffic.
    let builder = Mesh::builder()
        .initial_fetch_timeout(wait)
        .no_telemetry_push();
    let builder = match (&source.control_plane, &source.bootstrap) {
        (Some(url), _) => builder.control_plane(url),
        (None, Some(path)) => {
            builder.bootstrap(sinew::xds::Bootstrap::from_file(path).map_err(|e| e.to_string())?)
        }
        // Clap requires one of the two.
        (None, None) => return Err("--control-plane or --bootstrap is required".to_owned()),
    };
    builder.build().await.map_err(|e| e.to_string())
}
