//! The control plane's certificate authority: it signs workloads' CSRs
//! as their SPIFFE IDs, issues bootstrap tokens, serves the trust bundle
//! and rotates its root with an overlap. See `docs/control-plane.md`.

mod api;
mod csr;
mod files;
mod issued;
mod leaf;
mod options;
mod root;
mod roots;
mod spiffe;
mod time;
mod tokens;

pub(crate) use api::handle;
pub use files::{STATE_FILE, TOKENS_FILE};
pub use issued::IssuedView;
pub use options::{CaOptions, DEFAULT_LEAF_TTL, MAX_LEAF_TTL, MIN_LEAF_TTL};
pub use roots::Standing;
pub use spiffe::{DEFAULT_TRUST_DOMAIN, TrustDomain};
pub use time::Clock;
pub use tokens::Scope;

use root::Root;
use roots::{Entry, Roots, RotateRefusal};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::unix;
use tokens::Tokens;

/// Why a CA call was refused: the API's status follows the kind.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// `400`.
    Invalid(String),
    /// `404`.
    NotFound(String),
    /// `409`.
    Conflict(String),
    /// `429`.
    Full(String),
    /// `503`: the CA cannot do it now (its root expired, a file cannot be
    /// written).
    Unavailable(String),
}

/// A leaf just signed, with what the workload needs beside it.
#[derive(Debug)]
pub(crate) struct Signed {
    pub(crate) chain_pem: String,
    pub(crate) bundle_pem: String,
    pub(crate) expires_at: u64,
    pub(crate) refresh_at: u64,
}

#[derive(Debug)]
struct Inner {
    roots: Roots,
    tokens: Tokens,
    /// The last certificate issued per SPIFFE ID, for the dashboard.
    issued: issued::Issued,
}

/// The CA, shared by the API's handlers.
#[derive(Clone)]
pub(crate) struct Ca {
    inner: Arc<Mutex<Inner>>,
    /// One writer at a time, so the file last written holds the latest state.
    writing: Arc<tokio::sync::Mutex<()>>,
    clock: Clock,
    leaf_ttl: Duration,
    trust_domain: TrustDomain,
    dir: Option<PathBuf>,
    /// The root came from `--ca-cert`/`--ca-key`: it is not rotated here.
    from_files: bool,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Reads (or makes) the CA's state as `options` say; the error names
    /// the file or option at fault.
    pub(crate) fn start(options: CaOptions) -> Result<Self, String> {
        let trust_domain =
            TrustDomain::new(&options.trust_domain).map_err(|e| format!("trust_domain: {e}"))?;
        if options.leaf_ttl < MIN_LEAF_TTL || options.leaf_ttl > MAX_LEAF_TTL {
            return Err(format!(
                "leaf_ttl: {:?} is out of range ({:?} to {:?})",
                options.leaf_ttl, MIN_LEAF_TTL, MAX_LEAF_TTL
            ));
        }
        let now = (options.clock)();
        if let Some(dir) = &options.dir {
            files::make_dir(dir)?;
        }
        let (entries, from_files) = match (&options.cert_file, &options.key_file) {
            (Some(cert), Some(key)) => {
                let read = |path: &PathBuf, what: &str| {
                    files::read(path)?
                        .ok_or_else(|| format!("{what} {}: no such file", path.display()))
                        .and_then(|b| {
                            String::from_utf8(b)
                                .map_err(|_| format!("{what} {}: not PEM text", path.display()))
                        })
                };
                let cert_pem = read(cert, "cert_file")?;
                let key_pem = read(key, "key_file")?;
                let root =
                    Root::from_pem(&cert_pem, &key_pem, &trust_domain, Some(now)).map_err(|e| {
                        match e {
                            root::RootError::Cert(e) => {
                                format!("cert_file {}: {e}", cert.display())
                            }
                            root::RootError::Key(e) => format!("key_file {}: {e}", key.display()),
                        }
                    })?;
                (vec![entry(root, 0)], true)
            }
            (Some(_), None) => return Err("key_file: needed with cert_file".to_owned()),
            (None, Some(_)) => return Err("cert_file: needed with key_file".to_owned()),
            (None, None) => {
                let stored = match &options.dir {
                    Some(dir) => files::read_roots(dir, &trust_domain)?,
                    None => None,
                };
                match stored {
                    Some(entries) => (entries, false),
                    None => {
                        let root = Root::generate(&trust_domain, now)?;
                        let entries = vec![entry(root, 0)];
                        match &options.dir {
                            Some(dir) => {
                                let bytes = files::roots_file(&entries, &trust_domain)?;
                                files::write_now(&dir.join(STATE_FILE), &bytes)?;
                                tracing::info!(dir = %dir.display(), "CA root generated");
                            }
                            None => tracing::warn!(
                                "CA root generated in memory only: it changes at every start (give a state directory to keep it)"
                            ),
                        }
                        (entries, false)
                    }
                }
            }
        };
        let tokens = match &options.dir {
            Some(dir) => {
                let path = dir.join(TOKENS_FILE);
                match files::read(&path)? {
                    Some(bytes) => {
                        Tokens::from_file(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
                    }
                    None => Tokens::default(),
                }
            }
            None => Tokens::default(),
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                roots: Roots::new(entries),
                tokens,
                issued: Default::default(),
            })),
            writing: Arc::default(),
            clock: options.clock,
            leaf_ttl: options.leaf_ttl,
            trust_domain,
            dir: options.dir,
            from_files,
        })
    }

    /// The last certificate issued per SPIFFE ID.
    pub(crate) fn issued(&self) -> Vec<IssuedView> {
        self.lock().issued.list()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        unix((self.clock)())
    }

    /// Now, in unix seconds, by the CA's clock.
    pub(crate) fn unix_now(&self) -> u64 {
        self.now()
    }

    /// The roots trusted now, PEM, oldest first.
    pub(crate) fn bundle_pem_now(&self) -> String {
        let now = self.now();
        Self::bundle_pem(&self.lock().roots, now)
    }

    /// The trust domain.
    pub(crate) fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Every root trusted now: `(PEM, not_after, standing)`, oldest first.
    pub(crate) fn bundle(&self) -> Vec<(String, u64, Standing)> {
        let now = self.now();
        let inner = self.lock();
        inner
            .roots
            .entries()
            .iter()
            .zip(inner.roots.standings(now))
            .filter_map(|(e, s)| s.map(|s| (e.root.cert_pem.clone(), e.root.not_after, s)))
            .collect()
    }

    fn bundle_pem(roots: &Roots, now: u64) -> String {
        roots
            .trusted(now)
            .map(|e| e.root.cert_pem.as_str())
            .collect()
    }

    /// The identity bootstrap token `token` grants now for certificates.
    pub(crate) fn token_identity(&self, token: &str) -> Option<String> {
        let now = self.now();
        self.lock()
            .tokens
            .check(token, Scope::Certificate, now)
            .map(str::to_owned)
    }

    /// What token `token` grants now: its identity (empty for none) and
    /// scopes; `None` when it is not a live token.
    pub(crate) fn token_grant(&self, token: &str) -> Option<(String, Vec<Scope>)> {
        let now = self.now();
        self.lock()
            .tokens
            .find(token, now)
            .map(|s| (s.spiffe_id.clone(), s.scopes.clone()))
    }

    /// Signs `csr` as `spiffe_id` (already checked) with the signing root.
    pub(crate) async fn sign(&self, csr: &csr::Csr, spiffe_id: &str) -> Result<Signed, Refusal> {
        self.sign_key(&csr.public_key, spiffe_id, &[]).await
    }

    /// The control plane's own serving certificate: a key made here, and a
    /// leaf for `spiffe_id` that also names `hosts` (DNS names, IPs).
    pub(crate) async fn serving(
        &self,
        spiffe_id: &str,
        hosts: &[String],
    ) -> Result<(Signed, String), Refusal> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Refusal::Unavailable(format!("cannot generate a key: {e}")))?;
        let signed = self.sign_key(&key, spiffe_id, hosts).await?;
        Ok((signed, key.serialize_pem()))
    }

    async fn sign_key(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        spiffe_id: &str,
        hosts: &[String],
    ) -> Result<Signed, Refusal> {
        let now = self.now();
        let (signed, save) = {
            let mut inner = self.lock();
            let pruned = inner.roots.prune(now);
            // The file holds a bound on the end of the root's leaves: a
            // lifetime past this leaf, or, while a rotation is pending,
            // the end of the last leaf the root can sign before it stops.
            let ttl = self.leaf_ttl.as_secs();
            let bound = inner
                .roots
                .next_activation(now)
                .map(|at| at.saturating_add(ttl));
            let Some(entry) = inner.roots.signing_mut(now) else {
                return Err(Refusal::Unavailable("the CA has no root".to_owned()));
            };
            if now >= entry.root.not_after {
                return Err(Refusal::Unavailable(format!(
                    "the signing root expired at {} (unix): rotate it (POST /v1/ca/rotate)",
                    entry.root.not_after
                )));
            }
            let leaf = leaf::sign(
                &entry.root,
                public_key,
                spiffe_id,
                hosts,
                now,
                self.leaf_ttl,
            )
            .map_err(Refusal::Unavailable)?;
            entry.issued_until = entry.issued_until.max(leaf.not_after);
            let not_after = leaf.not_after;
            let mut save = pruned;
            if leaf.not_after > entry.persisted_until {
                let ahead = leaf.not_after.saturating_add(ttl);
                entry.persisted_until = bound.map_or(ahead, |b| b.min(ahead)).max(leaf.not_after);
                save = true;
            }
            let chain_pem = leaf.pem.clone();
            let lifetime = leaf.not_after.saturating_sub(now);
            let signed = Signed {
                chain_pem,
                bundle_pem: Self::bundle_pem(&inner.roots, now),
                expires_at: leaf.not_after,
                refresh_at: now + lifetime / 2,
            };
            inner.issued.record(spiffe_id, now, not_after);
            (signed, save)
        };
        // The leaf goes out only once the file says its root must stay
        // trusted until it expires.
        if save {
            self.save_roots().await.map_err(Refusal::Unavailable)?;
        }
        Ok(signed)
    }

    /// Issues a token for `namespace`/`service` (both needed unless the
    /// only scope is `read`) with `scopes`, valid `ttl`.
    pub(crate) async fn issue_token(
        &self,
        workload: Option<(&str, &str)>,
        scopes: Vec<Scope>,
        ttl: Duration,
    ) -> Result<(tokens::Issued, String, u64), Refusal> {
        let spiffe_id = match workload {
            Some((namespace, service)) => self
                .trust_domain
                .workload(namespace, service)
                .map_err(|(field, e)| Refusal::Invalid(format!("{field}: {e}")))?,
            None => String::new(),
        };
        let now = self.now();
        let expires_at = now.saturating_add(ttl.as_secs());
        let issued = {
            let mut inner = self.lock();
            inner.tokens.prune(now);
            if inner.tokens.len() >= tokens::MAX_TOKENS {
                return Err(Refusal::Full(format!(
                    "bootstrap tokens: {} held already: revoke some",
                    tokens::MAX_TOKENS
                )));
            }
            inner
                .tokens
                .issue(spiffe_id.clone(), scopes, expires_at)
                .map_err(Refusal::Unavailable)?
        };
        if let Err(e) = self.save_tokens().await {
            // Not kept, so not handed out.
            self.lock().tokens.revoke(&issued.id);
            return Err(Refusal::Unavailable(e));
        }
        Ok((issued, spiffe_id, expires_at))
    }

    /// Revokes bootstrap token `id`.
    pub(crate) async fn revoke_token(&self, id: &str) -> Result<(), Refusal> {
        if !self.lock().tokens.revoke(id) {
            return Err(Refusal::NotFound(format!("no bootstrap token `{id}`")));
        }
        self.save_tokens().await.map_err(Refusal::Unavailable)
    }

    /// Brings in a new root (see [`Roots::rotate`]); the new root's PEM
    /// and when it starts signing.
    pub(crate) async fn rotate(
        &self,
        activate_in: Duration,
        overlap: Option<Duration>,
    ) -> Result<(String, u64), Refusal> {
        if self.from_files {
            return Err(Refusal::Conflict(
                "the root was given as files (--ca-cert, --ca-key): rotate it by restarting with new files".to_owned(),
            ));
        }
        let now_time = (self.clock)();
        let now = unix(now_time);
        let root = Root::generate(&self.trust_domain, now_time).map_err(Refusal::Unavailable)?;
        let pem = root.cert_pem.clone();
        {
            let mut inner = self.lock();
            inner.roots.prune(now);
            inner
                .roots
                .rotate(root, now, activate_in, overlap)
                .map_err(|RotateRefusal::Pending { active_from }| {
                    Refusal::Conflict(format!(
                        "a rotation is under way: its root signs from {active_from} (unix)"
                    ))
                })?;
        }
        self.save_roots().await.map_err(Refusal::Unavailable)?;
        tracing::info!("CA root rotated");
        Ok((pem, now.saturating_add(activate_in.as_secs())))
    }

    async fn save_roots(&self) -> Result<(), String> {
        let (Some(dir), false) = (&self.dir, self.from_files) else {
            return Ok(());
        };
        let _writing = self.writing.lock().await;
        let bytes = files::roots_file(self.lock().roots.entries(), &self.trust_domain)?;
        files::write(dir.join(STATE_FILE), bytes).await
    }

    async fn save_tokens(&self) -> Result<(), String> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let _writing = self.writing.lock().await;
        let bytes = self.lock().tokens.to_file()?;
        files::write(dir.join(TOKENS_FILE), bytes).await
    }
}

fn entry(root: Root, active_from: u64) -> Entry {
    Entry {
        root,
        active_from,
        issued_until: 0,
        persisted_until: 0,
        trusted_until: None,
    }
}
