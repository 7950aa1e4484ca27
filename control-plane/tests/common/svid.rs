//! Certificates made with the `openssl` command line for the interop
//! tests (a root for `spiffe://example.org`, X.509-SVIDs signed by it), and
//! gRPC bootstraps whose `file_watcher` provider reads them.

use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const TRUST_DOMAIN: &str = "spiffe://example.org";

/// The SPIFFE ID of `workload`.
pub fn id(workload: &str) -> String {
    format!("{TRUST_DOMAIN}/ns/default/sa/{workload}")
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root CA for the trust domain: `ca.pem`, `ca.key`.
pub fn root(dir: &Path) {
    let san = format!("subjectAltName=URI:{TRUST_DOMAIN}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/O=sinew test root",
            "-addext",
            &san,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// An X.509-SVID for `workload`, signed by the root: `<workload>.pem` and
/// `<workload>.key`.
pub fn leaf(dir: &Path, workload: &str, serial: &str) {
    let ext = format!("{workload}.ext");
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName=URI:{}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
            id(workload)
        ),
    )
    .unwrap();
    let (key, csr, pem) = (
        format!("{workload}.key"),
        format!("{workload}.csr"),
        format!("{workload}.pem"),
    );
    let subject = format!("/O=sinew test {workload}");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "1",
            "-out",
            &pem,
            "-extfile",
            &ext,
        ],
    );
}

/// A gRPC bootstrap for node `node`: the control plane at `xds`, a
/// `file_watcher` certificate provider named `default` holding
/// `workload`'s SVID and the root, and the server Listener name template.
pub fn bootstrap(dir: &Path, workload: &str, node: &str, xds: SocketAddr) -> PathBuf {
    let file = |name: String| dir.join(name).to_str().unwrap().to_owned();
    let path = dir.join(format!("{node}-bootstrap.json"));
    std::fs::write(
        &path,
        json!({
            "xds_servers": [{
                "server_uri": xds.to_string(),
                "channel_creds": [{ "type": "insecure" }],
                "server_features": ["xds_v3"]
            }],
            "node": { "id": node },
            "certificate_providers": {
                "default": {
                    "plugin_name": "file_watcher",
                    "config": {
                        "certificate_file": file(format!("{workload}.pem")),
                        "private_key_file": file(format!("{workload}.key")),
                        "ca_certificate_file": file("ca.pem".to_owned()),
                        "refresh_interval": "60s"
                    }
                }
            },
            "server_listener_resource_name_template":
                "grpc/server?xds.resource.listening_address=%s"
        })
        .to_string(),
    )
    .unwrap();
    path
}

/// A free port on loopback (a server must know its port before it
/// starts: its Listener is named after its listening address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
