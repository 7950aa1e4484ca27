//! Trust bundles: the root certificates of each trust domain.

use super::spiffe_id::TrustDomain;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use std::collections::BTreeMap;
use std::fmt;

/// The root certificates trusted for each trust domain.
///
/// A trust domain may have several roots at once: during a CA rotation
/// both the old and the new root are trusted, so leaves signed by either
/// verify. A peer's chain is verified against the roots of the trust
/// domain in its SPIFFE ID only.
///
/// ```
/// use sinew::tls::{TrustBundle, TrustDomain};
///
/// let td = TrustDomain::new("example.org").unwrap();
/// let mut bundle = TrustBundle::new();
/// assert!(bundle.roots(&td).is_empty());
/// let err = bundle.add_pem(&td, b"no PEM here").unwrap_err();
/// assert_eq!(err.to_string(), "trust bundle for example.org: no certificate in the PEM");
/// ```
#[derive(Clone, Debug, Default)]
pub struct TrustBundle {
    domains: BTreeMap<TrustDomain, Roots>,
}

#[derive(Clone, Debug, Default)]
struct Roots {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustBundle {
    /// An empty bundle, trusting nothing.
    ///
    /// ```
    /// # use sinew::tls::TrustBundle;
    /// assert_eq!(TrustBundle::new().trust_domains().count(), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A bundle trusting the roots in `pem` (one or more `CERTIFICATE`
    /// blocks) for `trust_domain`.
    ///
    /// ```
    /// # use sinew::tls::{TrustBundle, TrustDomain};
    /// let td = TrustDomain::new("example.org").unwrap();
    /// assert!(TrustBundle::from_pem(td, b"").is_err());
    /// ```
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, BundleError> {
        let mut bundle = Self::new();
        bundle.add_pem(&trust_domain, pem)?;
        Ok(bundle)
    }

    /// Adds the roots in `pem` to those of `trust_domain`. Nothing is
    /// added if any of them is invalid.
    ///
    /// ```
    /// # use sinew::tls::{TrustBundle, TrustDomain};
    /// let td = TrustDomain::new("example.org").unwrap();
    /// let mut bundle = TrustBundle::new();
    /// assert!(bundle.add_pem(&td, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    /// assert!(bundle.roots(&td).is_empty());
    /// ```
    pub fn add_pem(&mut self, trust_domain: &TrustDomain, pem: &[u8]) -> Result<(), BundleError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BundleError::new(trust_domain, format!("bad PEM: {e}")))?;
        if certs.is_empty() {
            return Err(BundleError::new(trust_domain, "no certificate in the PEM"));
        }
        self.add_roots(trust_domain, certs)
    }

    /// Adds DER root certificates to those of `trust_domain`. Nothing is
    /// added if any of them is invalid.
    ///
    /// ```
    /// # use sinew::tls::{TrustBundle, TrustDomain};
    /// use rustls_pki_types::CertificateDer;
    /// let td = TrustDomain::new("example.org").unwrap();
    /// let err = TrustBundle::new()
    ///     .add_roots(&td, vec![CertificateDer::from(vec![1, 2, 3])])
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("trust bundle for example.org: root 0 is not a usable certificate"));
    /// ```
    pub fn add_roots(
        &mut self,
        trust_domain: &TrustDomain,
        certs: Vec<CertificateDer<'static>>,
    ) -> Result<(), BundleError> {
        let mut anchors = Vec::with_capacity(certs.len());
        for (i, cert) in certs.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(cert).map_err(|e| {
                BundleError::new(
                    trust_domain,
                    format!("root {i} is not a usable certificate: {e}"),
                )
            })?;
            anchors.push(anchor.to_owned());
        }
        let roots = self.domains.entry(trust_domain.clone()).or_default();
        for (cert, anchor) in certs.into_iter().zip(anchors) {
            if !roots.certs.contains(&cert) {
                roots.certs.push(cert);
                roots.anchors.push(anchor);
            }
        }
        Ok(())
    }

    /// The roots of `trust_domain`, DER; empty if it is not trusted.
    ///
    /// ```
    /// # use sinew::tls::{TrustBundle, TrustDomain};
    /// let td = TrustDomain::new("example.org").unwrap();
    /// assert!(TrustBundle::new().roots(&td).is_empty());
    /// ```
    pub fn roots(&self, trust_domain: &TrustDomain) -> &[CertificateDer<'static>] {
        self.domains
            .get(trust_domain)
            .map_or(&[], |roots| roots.certs.as_slice())
    }

    /// The trust domains with at least one root.
    ///
    /// ```
    /// # use sinew::tls::TrustBundle;
    /// assert!(TrustBundle::new().trust_domains().next().is_none());
    /// ```
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.domains.keys()
    }

    /// The trust anchors of `trust_domain`, for chain verification.
    pub(crate) fn anchors(&self, trust_domain: &TrustDomain) -> &[TrustAnchor<'static>] {
        self.domains
            .get(trust_domain)
            .map_or(&[], |roots| roots.anchors.as_slice())
    }
}

/// A trust bundle's roots could not be read.
///
/// ```
/// # use sinew::tls::{TrustBundle, TrustDomain};
/// let td = TrustDomain::new("td").unwrap();
/// let err = TrustBundle::from_pem(td, b"").unwrap_err();
/// assert_eq!(err.trust_domain().as_str(), "td");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleError {
    trust_domain: TrustDomain,
    message: String,
}

impl BundleError {
    fn new(trust_domain: &TrustDomain, message: impl Into<String>) -> Self {
        Self {
            trust_domain: trust_domain.clone(),
            message: message.into(),
        }
    }

    /// The trust domain whose roots were refused.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trust bundle for {}: {}",
            self.trust_domain, self.message
        )
    }
}

impl std::error::Error for BundleError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn roots_accumulate_without_duplicates_and_all_or_nothing() {
        let td = TrustDomain::new("td").unwrap();
        let other = TrustDomain::new("other").unwrap();
        let (a, b) = (root(), root());
        let mut bundle = TrustBundle::new();
        bundle.add_roots(&td, vec![a.clone()]).unwrap();
        bundle.add_roots(&td, vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(bundle.roots(&td), &[a.clone(), b.clone()]);
        assert_eq!(bundle.anchors(&td).len(), 2);
        assert!(bundle.roots(&other).is_empty());

        let err = bundle
            .add_roots(&other, vec![a, CertificateDer::from(vec![0x30, 0x00])])
            .unwrap_err();
        assert!(err.to_string().contains("root 1"), "{err}");
        assert!(bundle.roots(&other).is_empty());
        assert_eq!(bundle.trust_domains().collect::<Vec<_>>(), vec![&td]);
    }
}
