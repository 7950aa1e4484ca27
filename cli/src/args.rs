//! The command line, parsed by hand: a few flags do not need a parser
//! crate's build time.

use std::time::Duration;

/// Where the configuration comes from.
#[derive(Debug)]
pub(crate) enum Source {
    ControlPlane(String),
    Bootstrap(String),
}

#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) source: Source,
    pub(crate) service: String,
    pub(crate) count: usize,
    pub(crate) concurrency: usize,
    /// `Some(method path)` for a unary gRPC call with raw message bytes.
    pub(crate) grpc: Option<String>,
    pub(crate) data: Vec<u8>,
    pub(crate) path: String,
    pub(crate) json: bool,
    pub(crate) wait: Duration,
}

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) source: Source,
    pub(crate) services: Vec<String>,
    pub(crate) wait: Duration,
}

#[derive(Debug)]
pub(crate) struct ControlPlane {
    pub(crate) mesh: Option<String>,
    pub(crate) xds: std::net::SocketAddr,
    pub(crate) admin: std::net::SocketAddr,
    pub(crate) store: Option<String>,
    pub(crate) token_file: Option<String>,
    pub(crate) open_writes: bool,
}

#[derive(Debug)]
pub(crate) enum Command {
    Call(Call),
    Config(Config),
    ControlPlane(ControlPlane),
    Check(String),
    Help,
}

pub(crate) const USAGE: &str = "\
usage:
  sinew call <service> (--control-plane URL | --bootstrap FILE)
             [--count N] [--concurrency C] [--path /p]
             [--grpc /package.Service/Method [--data-hex HEX]]
             [--wait SECONDS] [--json]
      Sends N requests (default 1) through the mesh to <service>, C at a
      time (default 1). Prints how many each endpoint served and every
      failure with its reason; exits 1 if any request failed.
  sinew config <service>... (--control-plane URL | --bootstrap FILE) [--wait SECONDS]
      Prints, as JSON, what a client of those services sees from the
      control plane: each resource's version, ACK or NACK, last error, and
      the connection.
  sinew control-plane [--mesh FILE] [--xds ADDR] [--admin ADDR] [--store FILE]
                      [--token-file FILE] [--allow-unauthenticated-writes]
      Serves xDS (default 127.0.0.1:18000) from the mesh file, reloaded when
      it changes, and registered instances; the admin and registration API
      on --admin (default 127.0.0.1:18001). Registrations are kept in
      --store. Writes need the token in --token-file (or the environment's
      SINEW_CONTROL_PLANE_TOKEN); without one they are refused.
  sinew check FILE
      Validates a mesh file offline, with the control plane's errors.
";

/// Parses the arguments after the program name.
pub(crate) fn parse(args: &[String]) -> Result<Command, String> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    let mut source = None;
    let mut positional = Vec::new();
    let mut count = 1;
    let mut concurrency = 1;
    let mut grpc = None;
    let mut data = Vec::new();
    let mut path = "/".to_owned();
    let mut json = false;
    let mut wait = Duration::from_secs(15);
    let mut mesh = None;
    let mut xds = std::net::SocketAddr::from(([127, 0, 0, 1], 18000));
    let mut admin = std::net::SocketAddr::from(([127, 0, 0, 1], 18001));
    let mut store = None;
    let mut token_file = None;
    let mut open_writes = false;
    let mut i = 0;
    while i < rest.len() {
        let flag = rest[i].as_str();
        let mut value = || {
            i += 1;
            rest.get(i)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--control-plane" => source = Some(Source::ControlPlane(value()?)),
            "--bootstrap" => source = Some(Source::Bootstrap(value()?)),
            "--count" => count = number(flag, &value()?)?,
            "--concurrency" => concurrency = number(flag, &value()?)?,
            "--grpc" => grpc = Some(value()?),
            "--data-hex" => data = hex(&value()?)?,
            "--path" => path = value()?,
            "--wait" => wait = Duration::from_secs(number(flag, &value()?)? as u64),
            "--json" => json = true,
            "--mesh" => mesh = Some(value()?),
            "--xds" => xds = address(flag, &value()?)?,
            "--admin" => admin = address(flag, &value()?)?,
            "--store" => store = Some(value()?),
            "--token-file" => token_file = Some(value()?),
            "--allow-unauthenticated-writes" => open_writes = true,
            "-h" | "--help" => return Ok(Command::Help),
            other if other.starts_with("--") => return Err(format!("unknown flag {other}")),
            other => positional.push(other.to_owned()),
        }
        i += 1;
    }
    let source = || source.ok_or_else(|| "--control-plane or --bootstrap is required".to_owned());
    match command.as_str() {
        "call" => {
            let [service] = positional.as_slice() else {
                return Err("call takes one service".to_owned());
            };
            if count == 0 || concurrency == 0 {
                return Err("--count and --concurrency must be at least 1".to_owned());
            }
            if grpc.as_ref().is_some_and(|m| !m.starts_with('/')) {
                return Err("--grpc takes a method path: /package.Service/Method".to_owned());
            }
            Ok(Command::Call(Call {
                source: source()?,
                service: service.clone(),
                count,
                concurrency,
                grpc,
                data,
                path,
                json,
                wait,
            }))
        }
        "config" => {
            if positional.is_empty() {
                return Err("config takes at least one service".to_owned());
            }
            Ok(Command::Config(Config {
                source: source()?,
                services: positional,
                wait,
            }))
        }
        "control-plane" => {
            if let Some(extra) = positional.first() {
                return Err(format!("control-plane takes no argument `{extra}`"));
            }
            Ok(Command::ControlPlane(ControlPlane {
                mesh,
                xds,
                admin,
                store,
                token_file,
                open_writes,
            }))
        }
        "check" => match positional.as_slice() {
            [file] => Ok(Command::Check(file.clone())),
            _ => Err("check takes one mesh file".to_owned()),
        },
        "help" | "-h" | "--help" => Ok(Command::Help),
        other => Err(format!("unknown command `{other}`")),
    }
}

fn address(flag: &str, text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{flag}: `{text}` is not an ip:port address"))
}

fn number(flag: &str, text: &str) -> Result<usize, String> {
    text.parse()
        .map_err(|_| format!("{flag}: `{text}` is not a whole number"))
}

fn hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("--data-hex: an even number of hex digits is needed".to_owned());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .map_err(|_| format!("--data-hex: `{}` is not hex", &text[i..i + 2]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_calls_and_refuses_bad_flags() {
        let Ok(Command::Call(call)) = parse(&args(
            "call greeter --control-plane http://cp:1 --count 5 --concurrency 2 --grpc /a.B/C --data-hex 0a03",
        )) else {
            unreachable!("a valid call")
        };
        assert_eq!((call.count, call.concurrency), (5, 2));
        assert_eq!(call.data, [0x0a, 0x03]);
        assert_eq!(call.grpc.as_deref(), Some("/a.B/C"));
        assert_eq!(
            parse(&args("call greeter")).err().as_deref(),
            Some("--control-plane or --bootstrap is required")
        );
        assert_eq!(
            parse(&args("call greeter --bootstrap b.json --count x"))
                .err()
                .as_deref(),
            Some("--count: `x` is not a whole number")
        );
        assert_eq!(
            parse(&args("call g --bootstrap b --data-hex 0g"))
                .err()
                .as_deref(),
            Some("--data-hex: `0g` is not hex")
        );
        assert!(matches!(parse(&[]), Ok(Command::Help)));
    }
}
