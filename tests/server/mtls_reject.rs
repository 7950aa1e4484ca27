//! The server side of the reject matrix on `mesh.serve` (strict): each
//! broken client certificate, and none, is refused at the handshake and
//! no request reaches the handler. Then clients that are not Sinew's
//! (curl, OpenSSL) with certificate files from the same CA.

use super::*;
use crate::cases::cases;
use crate::certs::{Ca, Leaf};
use crate::mtls_support::{
    CART, REVIEWS, identity_of, mesh_as, mtls_config, raw_client, recording, tls_get,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_server_refuses_each_broken_client_certificate_at_the_handshake() {
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let server_mesh = mesh_as(
        identity_of(&ca, REVIEWS),
        mtls_config(addr, "http1", "{ mtls: strict }"),
    )
    .await;
    let (app, count) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let verifying_with = identity_of(&ca, CART);

    // The same path with a good certificate is served: the refusals below
    // are the certificates'.
    let good = ca.issue(&Leaf::svid(CART));
    let answer = tls_get(raw_client(Some(&good), &verifying_with), addr)
        .await
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let mut all: Vec<(&str, Option<crate::certs::Issued>)> = cases(&ca, CART)
        .into_iter()
        .map(|case| (case.name, Some(case.issued)))
        .collect();
    all.push(("no client certificate", None));
    assert_eq!(all.len(), 10);
    for (name, issued) in &all {
        let config = raw_client(issued.as_ref(), &verifying_with);
        let answer = tls_get(config, addr).await.unwrap_or_default();
        assert!(
            answer.is_empty(),
            "{name}: answered: {}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "{name}: reached the handler"
        );
    }
    within("shutdown", server.shutdown()).await.unwrap();
}

/// A file in a fresh directory of its own.
fn write(dir: &std::path::Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_string_lossy().into_owned()
}

/// `openssl s_client` verifying the server against `ca_file` (any failure
/// ends the handshake), with a client certificate when given, sending one
/// HTTP/1.1 request: its stdout.
async fn s_client(addr: SocketAddr, ca_file: &str, cert: Option<(&str, &str)>) -> String {
    let mut command = tokio::process::Command::new("openssl");
    command
        .args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-alpn",
            "http/1.1",
        ])
        .args(["-connect", &addr.to_string(), "-CAfile", ca_file])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some((cert, key)) = cert {
        command.args(["-cert", cert, "-key", key]);
    }
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stdin,
        b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    drop(stdin);
    let output = within("openssl s_client", child.wait_with_output())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "s_client stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// OpenSSL's client, verifying the server's chain against the CA file
/// (`-verify_return_error`; no host name is checked unless asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_with_certificate_files_reaches_a_strict_server_and_is_refused_without() {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: no openssl on this machine");
        return;
    }
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let server_mesh = mesh_as(
        identity_of(&ca, REVIEWS),
        mtls_config(addr, "http1", "{ mtls: strict }"),
    )
    .await;
    let (app, count) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let dir =
        std::env::temp_dir().join(format!("sinew-mtls-{}-{}", std::process::id(), addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let issued = ca.issue(&Leaf::svid(CART));
    let ca_file = write(&dir, "ca.pem", &ca.root_pem);
    let cert = write(&dir, "cert.pem", &issued.cert_pem);
    let key = write(&dir, "key.pem", &issued.key_pem);

    let answer = s_client(addr, &ca_file, Some((&cert, &key))).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(CART),
        "the handler saw the caller's SVID: {answer}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let refused = s_client(addr, &ca_file, None).await;
    assert!(!refused.contains("HTTP/1.1"), "{refused}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // The server's chain is verified: another CA's file fails the handshake.
    let other = write(&dir, "other.pem", &Ca::root("another root").root_pem);
    let unverified = s_client(addr, &other, Some((&cert, &key))).await;
    assert!(!unverified.contains("HTTP/1.1"), "{unverified}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let _ = std::fs::remove_dir_all(&dir);
    within("shutdown", server.shutdown()).await.unwrap();
}

/// curl with the CA, certificate and key files, fully verifying: the chain
/// against the CA file, and the host name against the server leaf's
/// subject CN (curl falls back to the CN when the certificate has no DNS
/// or IP SAN, as an X.509-SVID has none), reached by `--resolve`.
async fn curl(addr: SocketAddr, ca_file: &str, cert: Option<(&str, &str)>) -> (bool, String) {
    let mut command = tokio::process::Command::new("curl");
    let port = addr.port();
    command
        .args(["--silent", "--show-error", "--http1.1", "--max-time", "10"])
        .args(["--resolve", &format!("workload:{port}:{}", addr.ip())])
        .args(["--cacert", ca_file])
        .arg(format!("https://workload:{port}/"))
        .kill_on_drop(true);
    if let Some((cert, key)) = cert {
        command.args(["--cert", cert, "--key", key]);
    }
    let output = within("curl", command.output()).await.unwrap();
    eprintln!("curl stderr: {}", String::from_utf8_lossy(&output.stderr));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_certificate_files_reaches_a_strict_server_and_is_refused_without() {
    let found = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: no curl on this machine");
        return;
    }
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let server_mesh = mesh_as(
        identity_of(&ca, REVIEWS),
        mtls_config(addr, "http1", "{ mtls: strict }"),
    )
    .await;
    let (app, count) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let dir =
        std::env::temp_dir().join(format!("sinew-curl-{}-{}", std::process::id(), addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let issued = ca.issue(&Leaf::svid(CART));
    let ca_file = write(&dir, "ca.pem", &ca.root_pem);
    let cert = write(&dir, "cert.pem", &issued.cert_pem);
    let key = write(&dir, "key.pem", &issued.key_pem);

    let (ok, body) = curl(addr, &ca_file, Some((&cert, &key))).await;
    assert!(ok, "curl failed: {body}");
    assert_eq!(body, CART, "the handler saw the caller's SVID");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let (ok, body) = curl(addr, &ca_file, None).await;
    assert!(
        !ok && body.is_empty(),
        "answered without a certificate: {body}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // curl does verify the server: against another CA's file it stops.
    let other = write(&dir, "other.pem", &Ca::root("another root").root_pem);
    let (ok, body) = curl(addr, &other, Some((&cert, &key))).await;
    assert!(!ok && body.is_empty(), "{body}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let _ = std::fs::remove_dir_all(&dir);
    within("shutdown", server.shutdown()).await.unwrap();
}
