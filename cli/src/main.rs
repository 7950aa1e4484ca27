//! `sinew`: call services through the mesh, and see what a client sees
//! from its control plane. Run `sinew help`.

// Printing is what a command line is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod call;
mod config;
mod control_plane;

use args::{Command, Source, USAGE};
use sinew::mesh::Mesh;
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args::parse(&args) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Call(call)) => call::run(call).await,
        Ok(Command::Config(config)) => config::run(config).await,
        Ok(Command::ControlPlane(options)) => control_plane::serve(options).await,
        Ok(Command::Check(file)) => Ok(control_plane::check(&file)),
        Err(message) => {
            eprint!("sinew: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("sinew: {message}");
            ExitCode::from(2)
        }
    }
}

/// A mesh whose configuration comes from `source`.
async fn mesh(source: &Source, wait: Duration) -> Result<Mesh, String> {
    let builder = Mesh::builder().initial_fetch_timeout(wait);
    let builder = match source {
        Source::ControlPlane(url) => builder.control_plane(url),
        Source::Bootstrap(path) => {
            builder.bootstrap(sinew::xds::Bootstrap::from_file(path).map_err(|e| e.to_string())?)
        }
    };
    builder.build().await.map_err(|e| e.to_string())
}
