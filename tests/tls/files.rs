//! The file source: files replaced on disk are picked up at the next
//! refresh, bad files leave the last good material in place. Time is
//! paused: a refresh interval passes in no time.

use crate::certs::{Ca, Issued, Leaf, id};
use crate::{SERVER_ID, TD};
use sinew::tls::{FileWatcher, FileWatcherConfig, Identity, IdentityError, certificate_providers};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("sinew-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn write(&self, issued: &Issued, ca: &Ca) {
        // Written aside and renamed in, as issuers do.
        for (file, text) in [
            ("cert.pem", &issued.cert_pem),
            ("key.pem", &issued.key_pem),
            ("ca.pem", &ca.root_pem),
        ] {
            replace(&self.path(file), text.as_bytes());
        }
    }
}

fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bootstrap(dir: &Dir, interval: &str) -> String {
    serde_json::json!({
        "xds_servers": [{"server_uri": "localhost:1", "channel_creds": [{"type": "insecure"}]}],
        "certificate_providers": {
            "mesh": {
                "plugin_name": "file_watcher",
                "config": {
                    "certificate_file": dir.path("cert.pem"),
                    "private_key_file": dir.path("key.pem"),
                    "ca_certificate_file": dir.path("ca.pem"),
                    "refresh_interval": interval,
                }
            }
        }
    })
    .to_string()
}

#[tokio::test(start_paused = true)]
async fn replaced_files_are_picked_up_and_bad_ones_ignored() {
    let dir = Dir::new("watch");
    let ca = Ca::root("root");
    dir.write(&ca.issue(&Leaf::svid(SERVER_ID)), &ca);

    let providers = certificate_providers(&bootstrap(&dir, "60s")).unwrap();
    let config = providers["mesh"].clone();
    assert_eq!(config.refresh_interval, Duration::from_secs(60));

    let identity = Identity::new();
    let mut changes = identity.subscribe();
    let _watcher = FileWatcher::start(config, identity.clone()).await.unwrap();
    assert_eq!(identity.spiffe_id(), Some(id(SERVER_ID)));
    changes.borrow_and_update();

    // A new leaf, with another ID, appears on disk.
    let next = "spiffe://cluster.local/ns/shop/sa/cart-v2";
    dir.write(&ca.issue(&Leaf::svid(next)), &ca);
    tokio::time::timeout(Duration::from_secs(61), changes.changed())
        .await
        .expect("picked up within one interval")
        .unwrap();
    assert_eq!(identity.spiffe_id(), Some(id(next)));

    // A truncated certificate: logged, and the last good one stays.
    replace(&dir.path("cert.pem"), b"-----BEGIN CERTIFICATE-----\n");
    let waited = tokio::time::timeout(Duration::from_secs(150), changes.changed()).await;
    assert!(waited.is_err(), "bad files must not be installed");
    assert_eq!(identity.spiffe_id(), Some(id(next)));

    // A key that does not match: refused as well.
    let a = ca.issue(&Leaf::svid(SERVER_ID));
    let b = ca.issue(&Leaf::svid(SERVER_ID));
    replace(&dir.path("cert.pem"), a.cert_pem.as_bytes());
    replace(&dir.path("key.pem"), b.key_pem.as_bytes());
    let waited = tokio::time::timeout(Duration::from_secs(150), changes.changed()).await;
    assert!(waited.is_err(), "a mismatched key must not be installed");

    // Fixed on disk: installed at the next refresh.
    replace(&dir.path("key.pem"), a.key_pem.as_bytes());
    tokio::time::timeout(Duration::from_secs(61), changes.changed())
        .await
        .expect("fixed files picked up")
        .unwrap();
    assert_eq!(identity.spiffe_id(), Some(id(SERVER_ID)));
    assert_eq!(identity.credentials().unwrap().chain()[0], a.chain[0]);
}

#[tokio::test]
async fn bad_files_at_start_are_an_error_naming_the_file() {
    let dir = Dir::new("start");
    let ca = Ca::root("root");
    dir.write(&ca.issue(&Leaf::svid(SERVER_ID)), &ca);
    let mut config = FileWatcherConfig::new(
        dir.path("cert.pem"),
        dir.path("missing-key.pem"),
        dir.path("ca.pem"),
    );
    let identity = Identity::new();
    match FileWatcher::start(config.clone(), identity.clone()).await {
        Err(IdentityError::File { field, path, .. }) => {
            assert_eq!(field, "private_key_file");
            assert_eq!(path, dir.path("missing-key.pem"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!identity.is_ready());

    // A CA file of another CA: the chain does not verify.
    config.private_key_file = dir.path("key.pem");
    replace(&dir.path("ca.pem"), Ca::root("other").root_pem.as_bytes());
    let err = config.load().unwrap_err();
    match &err {
        IdentityError::File {
            field,
            path,
            reason,
        } => {
            assert_eq!(*field, "ca_certificate_file");
            assert_eq!(path, &dir.path("ca.pem"));
            assert!(reason.contains("does not verify"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    let _ = TD;
}
