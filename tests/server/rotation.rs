//! Rotation under continuous load: leaves and then the CA change while
//! requests flow, with no failed request and no connection reset.

use super::*;
use crate::certs::{Ca, Leaf};
use crate::mtls_support::{CART, REVIEWS, TD, mesh_as, mtls_config, raw_client, recording};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpInfo;
use sinew::tls::{Identity, TrustBundle, TrustDomain};
use std::collections::BTreeSet;
use std::sync::Mutex;
use tokio::sync::watch;

/// Requests from `workers` loops (a client each) until `stop` turns true:
/// how many succeeded, the errors, and the client ports the responses came
/// over (one per connection).
struct Load {
    ok: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    ports: Arc<Mutex<BTreeSet<u16>>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(mesh: &Mesh, workers: usize) -> Load {
        let (stop, stopped) = watch::channel(false);
        let ok = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let ports = Arc::new(Mutex::new(BTreeSet::new()));
        let tasks = (0..workers)
            .map(|_| {
                let client = mesh.http_client::<Empty<Bytes>>("reviews");
                let (ok, errors, ports, stopped) =
                    (ok.clone(), errors.clone(), ports.clone(), stopped.clone());
                tokio::spawn(async move {
                    while !*stopped.borrow() {
                        let request = Request::get("http://reviews/")
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        match client.clone().oneshot(request).await {
                            Ok(response) if response.status() == 200 => {
                                if let Some(info) = response.extensions().get::<HttpInfo>() {
                                    ports.lock().unwrap().insert(info.local_addr().port());
                                }
                                let _ = response.into_body().collect().await;
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(response) => errors
                                .lock()
                                .unwrap()
                                .push(format!("status {}", response.status())),
                            Err(error) => errors.lock().unwrap().push(error.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            ok,
            errors,
            ports,
            stop,
            tasks,
        }
    }

    /// Waits until `n` more requests have succeeded (a deadline fails).
    async fn progress(&self, n: usize) {
        let target = self.ok.load(Ordering::SeqCst) + n;
        within("requests to flow", async {
            while self.ok.load(Ordering::SeqCst) < target {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    async fn stop(self) -> (usize, Vec<String>, BTreeSet<u16>) {
        self.stop.send_replace(true);
        for task in self.tasks {
            within("the load to stop", task).await.unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        let ports = self.ports.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), errors, ports)
    }
}

fn rotate(identity: &Identity, ca: &Ca, id: &str, bundle: TrustBundle) {
    let issued = ca.issue(&Leaf::svid(id));
    identity
        .set(issued.chain.clone(), issued.key(), bundle)
        .unwrap();
}

/// The leaf a new connection to `addr` is shown.
async fn leaf_served(addr: SocketAddr, ca: &Ca, verifying_with: &Identity) -> Vec<u8> {
    let raw = raw_client(Some(&ca.issue(&Leaf::svid(CART))), verifying_with);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = within(
        "a handshake",
        tokio_rustls::TlsConnector::from(raw).connect(
            rustls_pki_types::ServerName::try_from("reviews").unwrap(),
            tcp,
        ),
    )
    .await
    .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_and_the_ca_rotate_under_load_with_no_error_and_no_reset() {
    let td = TrustDomain::new(TD).unwrap();
    let old_ca = Ca::root("old root");
    let (listener, addr) = listener().await;
    let config = mtls_config(addr, "http2", "{ mtls: strict }");
    let server_identity = Identity::new();
    let client_identity = Identity::new();
    rotate(&server_identity, &old_ca, REVIEWS, old_ca.bundle(TD));
    rotate(&client_identity, &old_ca, CART, old_ca.bundle(TD));
    let server_mesh = mesh_as(server_identity.clone(), config.clone()).await;
    let (app, served) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let client_mesh = mesh_as(client_identity.clone(), config).await;
    let load = Load::start(&client_mesh, 4);
    load.progress(50).await;
    // The connections open before anything rotates: one per worker's
    // client, once each has been answered.
    within("every worker to be answered", async {
        while load.ports.lock().unwrap().len() < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let before = load.ports.lock().unwrap().clone();

    // Leaves rotate, both sides, while requests flow.
    for _ in 0..10 {
        rotate(&server_identity, &old_ca, REVIEWS, old_ca.bundle(TD));
        rotate(&client_identity, &old_ca, CART, old_ca.bundle(TD));
        load.progress(20).await;
    }
    let leaf = server_identity.credentials().unwrap().chain()[0].to_vec();
    assert_eq!(
        leaf_served(addr, &old_ca, &client_identity).await,
        leaf,
        "a new connection gets the newest leaf"
    );

    // The CA rotates with an overlap: both roots trusted, then leaves from
    // the new one, then the old root leaves the bundle.
    let new_ca = Ca::root("new root");
    let both = || {
        let mut bundle = old_ca.bundle(TD);
        bundle.add_pem(&td, new_ca.root_pem.as_bytes()).unwrap();
        bundle
    };
    server_identity.set_bundle(both()).unwrap();
    client_identity.set_bundle(both()).unwrap();
    load.progress(20).await;
    rotate(&server_identity, &new_ca, REVIEWS, both());
    load.progress(20).await;
    rotate(&client_identity, &new_ca, CART, both());
    load.progress(20).await;
    server_identity.set_bundle(new_ca.bundle(TD)).unwrap();
    client_identity.set_bundle(new_ca.bundle(TD)).unwrap();
    load.progress(50).await;
    let leaf = server_identity.credentials().unwrap().chain()[0].to_vec();
    assert_eq!(leaf_served(addr, &new_ca, &client_identity).await, leaf);

    let (ok, errors, ports) = load.stop().await;
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(ok >= 400, "{ok}");
    assert_eq!(
        ports, before,
        "the connections open before the rotations served to the end, and no other"
    );
    assert_eq!(served.load(Ordering::SeqCst), ok);
    within("shutdown", server.shutdown()).await.unwrap();
}

/// A TLS 1.3 resumption skips the client's certificate (rustls restores
/// the chain verified at the full handshake). A root taken out of the
/// server's bundle (the end of a CA rotation's overlap, or a compromised
/// root cut off) refuses its clients' resumptions as it refuses their
/// full handshakes: the ticket would otherwise admit them for hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_taken_out_of_the_bundle_refuses_resumed_clients_too() {
    let td = TrustDomain::new(TD).unwrap();
    let old = Ca::root("old root");
    let new = Ca::root("new root");
    let mut both = new.bundle(TD);
    both.add_pem(&td, old.root_pem.as_bytes()).unwrap();
    // The server's leaf is from the new root; during the overlap it
    // trusts both. The client still has a leaf from the old root.
    let server_identity = Identity::new();
    rotate(&server_identity, &new, REVIEWS, both.clone());
    let client_identity = Identity::new();
    rotate(&client_identity, &old, CART, both);
    let (listener, addr) = listener().await;
    let mesh = mesh_as(server_identity.clone(), mtls_config(addr, "http1", "")).await;
    let (app, served) = recording();
    let server = mesh.serve("reviews", listener, app).await.unwrap();
    // Sinew's client config: it keeps sessions to resume.
    let config = client_identity
        .client_config([REVIEWS.parse().unwrap()], vec![b"http/1.1".to_vec()])
        .unwrap();
    let answer = crate::mtls_support::tls_get(config.clone(), addr)
        .await
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // A second connection resumes while the old root is trusted.
    let answer = crate::mtls_support::tls_get(config.clone(), addr)
        .await
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // The overlap ends: the old root leaves the server's bundle.
    server_identity.set_bundle(new.bundle(TD)).unwrap();
    let answer = crate::mtls_support::tls_get(config, addr)
        .await
        .unwrap_or_default();
    assert!(
        !answer.windows(4).any(|w| w == b"HTTP"),
        "a resumed client of the removed root was served: {}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
    within("shutdown", server.shutdown()).await.unwrap();
}
