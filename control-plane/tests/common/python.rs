//! Python processes (grpcio) for the interop tests, speaking lines on
//! stdin and stdout. The interpreter is `SINEW_XDS_PYTHON` (set by
//! `scripts/test.sh`, which installs grpcio), or `python3`.

use crate::common::within;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub fn python() -> String {
    std::env::var("SINEW_XDS_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

pub fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A Python process speaking lines on stdin and stdout.
pub struct Python {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Python {
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(python());
        command
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            _child: child,
            stdin,
            lines,
        }
    }

    pub async fn line(&mut self) -> String {
        within("a line from Python", self.lines.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "the Python process ended: install grpcio (scripts/test.sh does) or point \
                 SINEW_XDS_PYTHON at an interpreter that has it"
                )
            })
    }

    pub async fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }
}
