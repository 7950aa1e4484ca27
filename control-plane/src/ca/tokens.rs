//! Bootstrap tokens: a credential the admin issues for one workload
//! identity, with which that workload (and only it) gets certificates.
//!
//! A token carries scopes ([`Scope`]): `certificate` (a certificate for
//! its identity, what bootstrap tokens were first for), `register` (the
//! registry's leases of its identity's service, and no other's) and `read`
//! (the admin API's reads). A token file written before scopes existed
//! holds tokens with `certificate` only.
//!
//! A token is `<id>.<secret>`: the id (public, for revocation) names the
//! entry, and only the secret's SHA-256 is kept, compared in constant
//! time. The secret is 256 random bits, so a fast hash is enough: there
//! is nothing to guess.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// The most tokens held at once.
pub(crate) const MAX_TOKENS: usize = 100_000;

/// What a token may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /v1/certificates` for the token's own identity.
    Certificate,
    /// Registering, renewing and deregistering leases of the token's own
    /// service (the service of its SPIFFE ID), and no other's.
    Register,
    /// The admin API's reads (`/v1/services`, `/v1/clients`,
    /// `/v1/registrations`).
    Read,
}

impl Scope {
    /// The scope's name in requests and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Certificate => "certificate",
            Scope::Register => "register",
            Scope::Read => "read",
        }
    }
}

fn certificate_only() -> Vec<Scope> {
    vec![Scope::Certificate]
}

/// One token as kept: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Stored {
    /// SHA-256 of the secret, base64url.
    pub(crate) secret_sha256: String,
    /// The identity it grants; empty for a token with the `read` scope
    /// only.
    pub(crate) spiffe_id: String,
    /// Unix seconds.
    pub(crate) expires_at: u64,
    /// What it may be used for.
    #[serde(default = "certificate_only")]
    pub(crate) scopes: Vec<Scope>,
}

/// A token just issued: the only time its secret is seen.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) id: String,
    pub(crate) token: String,
}

/// The tokens, by id.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    by_id: BTreeMap<String, Stored>,
}

fn random(bytes: usize) -> Result<String, String> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).map_err(|_| "no random numbers".to_owned())?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

fn digest(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        secret.as_bytes(),
    ))
}

impl Tokens {
    /// The tokens of a token file.
    pub(crate) fn from_file(bytes: &[u8]) -> Result<Self, String> {
        let by_id = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(Self { by_id })
    }

    /// The token file's contents.
    pub(crate) fn to_file(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec_pretty(&self.by_id).map_err(|e| e.to_string())
    }

    /// How many are held.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// A new token for `spiffe_id` with `scopes`, until `expires_at`.
    pub(crate) fn issue(
        &mut self,
        spiffe_id: String,
        scopes: Vec<Scope>,
        expires_at: u64,
    ) -> Result<Issued, String> {
        let id = random(12)?;
        let secret = random(32)?;
        self.by_id.insert(
            id.clone(),
            Stored {
                secret_sha256: digest(&secret),
                spiffe_id,
                expires_at,
                scopes,
            },
        );
        let token = format!("{id}.{secret}");
        Ok(Issued { id, token })
    }

    /// The identity `token` grants at `now` with `scope`, if it is one of
    /// ours, has that scope and has not expired.
    pub(crate) fn check(&self, token: &str, scope: Scope, now: u64) -> Option<&str> {
        self.find(token, now)
            .filter(|s| s.scopes.contains(&scope))
            .map(|s| s.spiffe_id.as_str())
    }

    /// The token `token` at `now`, if it is one of ours and has not
    /// expired.
    pub(crate) fn find(&self, token: &str, now: u64) -> Option<&Stored> {
        let (id, secret) = token.split_once('.')?;
        let stored = self.by_id.get(id)?;
        let matches: bool = digest(secret)
            .as_bytes()
            .ct_eq(stored.secret_sha256.as_bytes())
            .into();
        (matches && now < stored.expires_at).then_some(stored)
    }

    /// Revokes token `id`; whether there was one.
    pub(crate) fn revoke(&mut self, id: &str) -> bool {
        self.by_id.remove(id).is_some()
    }

    /// Drops the tokens expired at `now`; whether any was.
    pub(crate) fn prune(&mut self, now: u64) -> bool {
        let before = self.by_id.len();
        self.by_id.retain(|_, t| now < t.expires_at);
        self.by_id.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::{Scope, Tokens};

    #[test]
    fn a_token_grants_its_identity_until_it_expires_or_is_revoked() {
        let mut tokens = Tokens::default();
        let issued = tokens
            .issue(
                "spiffe://td/ns/a/sa/b".to_owned(),
                vec![Scope::Certificate],
                100,
            )
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(issued.token.len() >= 40);
        assert_eq!(
            tokens.check(&issued.token, Scope::Certificate, 99),
            Some("spiffe://td/ns/a/sa/b")
        );
        assert_eq!(tokens.check(&issued.token, Scope::Certificate, 100), None);
        let wrong = format!("{}.{}", issued.id, "x".repeat(43));
        assert_eq!(tokens.check(&wrong, Scope::Certificate, 0), None);
        assert_eq!(tokens.check("nonsense", Scope::Certificate, 0), None);
        // The file never holds the secret.
        let file = tokens.to_file().unwrap_or_default();
        let secret = issued
            .token
            .split_once('.')
            .map(|s| s.1)
            .unwrap_or_default();
        assert!(!String::from_utf8_lossy(&file).contains(secret));
        let reread = Tokens::from_file(&file).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            reread.check(&issued.token, Scope::Certificate, 0),
            Some("spiffe://td/ns/a/sa/b")
        );
        // Scopes are kept apart.
        assert_eq!(reread.check(&issued.token, Scope::Register, 0), None);
        assert!(tokens.revoke(&issued.id));
        assert_eq!(tokens.check(&issued.token, Scope::Certificate, 0), None);
        assert!(!tokens.revoke(&issued.id));
    }
}

#[cfg(test)]
mod file_tests {
    use super::{Scope, Tokens};

    #[test]
    fn a_token_file_from_before_scopes_grants_certificates_only() {
        let old = br#"{"abc": {"secret_sha256": "x", "spiffe_id": "spiffe://td/ns/a/sa/b", "expires_at": 5}}"#;
        let tokens = Tokens::from_file(old).unwrap_or_else(|e| unreachable!("{e}"));
        let stored = tokens.by_id.get("abc").map(|s| s.scopes.clone());
        assert_eq!(stored, Some(vec![Scope::Certificate]));
    }
}
