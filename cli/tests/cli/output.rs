//! Output to a reader that went away (`sinew config ... | head`) or to a
//! full disk: a quiet exit with the command's own status, or a clear error;
//! never a panic.

use crate::support::{closed_port, named};
use crate::{DEADLINE, control_plane, sinew};

/// Runs `sinew` with stdout a pipe whose read end is already closed: its
/// exit code and stderr.
async fn into_closed_pipe(args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    with_stdout(writer.into(), args).await
}

/// Runs `sinew` with `stdout`: its exit code and stderr.
async fn with_stdout(stdout: std::process::Stdio, args: &[&str]) -> (i32, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sinew {args:?} still running after {DEADLINE:?}"))
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!err.contains("panicked"), "sinew {args:?}: {err}");
    (output.status.code().unwrap_or(-1), err)
}

fn mesh_files(dir: &std::path::Path) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "services:\n  reviews:\n    routes: [{ split: [{ cluster: v1 }] }]\nclusters:\n  v1:\n    endpoints: [{ address: \"127.0.0.1:9001\" }]\n",
    )
    .unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "services:\n  reviews:\n    routes: [{ split: [{ cluster: v2 }] }]\n",
    )
    .unwrap();
    (
        good.to_str().unwrap().to_owned(),
        bad.to_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn every_printing_command_exits_quietly_on_a_closed_stdout() {
    let dir = std::env::temp_dir().join(format!("sinew-pipe-{}", std::process::id()));
    let (good, bad) = mesh_files(&dir);
    // Help and completions, printed by clap or by sinew.
    assert_eq!(into_closed_pipe(&[]).await.0, 0);
    assert_eq!(into_closed_pipe(&["call", "--help"]).await.0, 0);
    assert_eq!(into_closed_pipe(&["completions", "bash"]).await.0, 0);
    // The command's own status stands: the reader only stopped reading.
    assert_eq!(into_closed_pipe(&["check", &good]).await.0, 0);
    let (code, err) = into_closed_pipe(&["check", &bad]).await;
    assert_eq!(code, 1);
    assert!(err.contains("unknown cluster `v2`"), "{err}");

    let (a, _) = named("a").await;
    let (_ads, control) = control_plane("reviews", &[a.addr]).await;
    let url = control.url("");
    let (code, err) = into_closed_pipe(&["config", "reviews", "--control-plane", &url]).await;
    assert_eq!(code, 0, "{err}");
    for json in [&[][..], &["--json"]] {
        let mut args = vec!["call", "reviews", "--control-plane", &url, "--count", "3"];
        args.extend_from_slice(json);
        let (code, err) = into_closed_pipe(&args).await;
        assert_eq!(code, 0, "{err}");
    }
    let failing = ["call", "ratings", "--control-plane", &url, "--wait", "1"];
    assert_eq!(into_closed_pipe(&failing).await.0, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Any other failure to write is an error that says so, not a panic.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_full_stdout_is_an_error_that_says_so() {
    let dir = std::env::temp_dir().join(format!("sinew-full-{}", std::process::id()));
    let (good, _) = mesh_files(&dir);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (code, err) = with_stdout(full.into(), &["check", &good]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sinew: cannot write to stdout:"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A closed stdout does not stop the control plane: its banner is news,
/// not its work. (It used to panic printing the banner, and exit.)
#[tokio::test]
async fn the_control_plane_keeps_serving_with_a_closed_stdout() {
    let dir = std::env::temp_dir().join(format!("sinew-cp-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, _) = named("a").await;
    let mesh = dir.join("mesh.yaml");
    std::fs::write(
        &mesh,
        format!(
            "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: v1 }}] }}]\nclusters:\n  v1:\n    endpoints: [{{ address: \"{}\" }}]\n",
            a.addr
        ),
    )
    .unwrap();
    // Ports chosen here, as the banner cannot be read.
    let (xds, admin) = (closed_port().await, closed_port().await);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["control-plane", "--mesh", mesh.to_str().unwrap()])
        .args(["--xds", &xds.to_string(), "--admin", &admin.to_string()])
        .arg("--insecure-xds")
        .stdout(writer)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The client connects once the control plane listens (it retries), and
    // the call is served from its configuration: by then the banner, written
    // as the control plane starts, has met the closed pipe.
    let url = format!("http://{xds}");
    let (code, out, err) =
        sinew(&["call", "reviews", "--control-plane", &url, "--wait", "30"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the control plane exited: {:?}",
        child.try_wait()
    );
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
