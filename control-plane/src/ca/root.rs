//! A CA root: a self-signed ECDSA P-256 certificate whose URI SAN is the
//! trust domain's SPIFFE ID, with its key; generated, or read from PEM.

use super::spiffe::TrustDomain;
use super::time::{datetime, unix};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use std::time::{Duration, SystemTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// How long a generated root is valid.
pub(crate) const ROOT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// How far in the past certificates start, for clocks that lag ours.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A root that can sign.
pub(crate) struct Root {
    /// The certificate, PEM.
    pub(crate) cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub(crate) key_pem: String,
    /// The end of the certificate's validity, unix seconds.
    pub(crate) not_after: u64,
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Root")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A random positive serial number of 128 bits.
pub(crate) fn serial() -> Result<rcgen::SerialNumber, String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no random numbers".to_owned())?;
    // Positive, and with no leading zero byte for DER to strip.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

impl Root {
    /// A new root for `trust_domain`, valid from a little before `now`
    /// for [`ROOT_LIFETIME`].
    pub(crate) fn generate(trust_domain: &TrustDomain, now: SystemTime) -> Result<Self, String> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot generate a key: {e}"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Sinew");
        name.push(
            DnType::CommonName,
            format!("Sinew CA {trust_domain} {}", unix(now)),
        );
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let uri = trust_domain
            .id()
            .try_into()
            .map_err(|e| format!("the trust domain's ID: {e}"))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let not_after = unix(now + ROOT_LIFETIME);
        params.not_before = datetime(unix(now).saturating_sub(CLOCK_SKEW.as_secs()));
        params.not_after = datetime(not_after);
        params.serial_number = Some(serial()?);
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("cannot sign the root: {e}"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// The root in `cert_pem` (its first certificate) with the key in
    /// `key_pem`. It must be a CA allowed to sign certificates, valid at
    /// `now` (when given), match the key, and name no other trust domain than
    /// `trust_domain`. The error says what is wrong, for the caller to
    /// prefix with the file.
    pub(crate) fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        trust_domain: &TrustDomain,
        now: Option<SystemTime>,
    ) -> Result<Self, RootError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| RootError::Cert(format!("no PEM certificate: {e}")))?;
        if pem.label != "CERTIFICATE" {
            return Err(RootError::Cert(format!(
                "a `{}` PEM block, not a CERTIFICATE",
                pem.label
            )));
        }
        let der = pem.contents;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| RootError::Cert(format!("not an X.509 certificate: {e}")))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| RootError::Key(format!("not a PEM private key rcgen can use: {e}")))?;
        check_ca(&cert, trust_domain, now).map_err(RootError::Cert)?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(RootError::Key(
                "the key is not the certificate's: it does not match its public key".to_owned(),
            ));
        }
        let not_after = cert.validity().not_after.timestamp().max(0) as u64;
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)
            .map_err(|e| RootError::Cert(format!("cannot sign with it: {e}")))?;
        let cert_pem = pem_of(&der);
        let key_pem = issuer.key().serialize_pem();
        Ok(Self {
            cert_pem,
            key_pem,
            not_after,
            issuer,
        })
    }
}

/// What is wrong with a root read from files: its certificate or its key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RootError {
    /// The certificate.
    Cert(String),
    /// The key.
    Key(String),
}

impl std::fmt::Display for RootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootError::Cert(e) => write!(f, "certificate: {e}"),
            RootError::Key(e) => write!(f, "key: {e}"),
        }
    }
}

/// The PEM of certificate `der`.
pub(crate) fn pem_of(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn check_ca(
    cert: &X509Certificate<'_>,
    trust_domain: &TrustDomain,
    now: Option<SystemTime>,
) -> Result<(), String> {
    let constraints = cert
        .basic_constraints()
        .map_err(|e| format!("basic constraints: {e}"))?;
    if !constraints.is_some_and(|c| c.value.ca) {
        return Err("not a CA certificate (basic constraints CA=false or absent)".to_owned());
    }
    let usage = cert.key_usage().map_err(|e| format!("key usage: {e}"))?;
    if usage.is_some_and(|u| !u.value.key_cert_sign()) {
        return Err("its key usage does not allow signing certificates (keyCertSign)".to_owned());
    }
    let validity = cert.validity();
    if let Some(now) = now.map(|n| unix(n) as i64) {
        if validity.not_after.timestamp() <= now {
            return Err(format!("expired at {}", validity.not_after));
        }
        if validity.not_before.timestamp() > now {
            return Err(format!("not valid before {}", validity.not_before));
        }
    }
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| format!("subject alternative name: {e}"))?;
    for name in sans.iter().flat_map(|s| s.value.general_names.iter()) {
        if let GeneralName::URI(uri) = name
            && uri.starts_with("spiffe://")
            && *uri != trust_domain.id()
        {
            return Err(format!(
                "its URI SAN `{uri}` is not trust domain `{trust_domain}` (spiffe://{trust_domain})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_root_reads_back() {
        let td = TrustDomain::new("example.org").unwrap_or_else(|e| unreachable!("{e}"));
        let now = SystemTime::now();
        let root = Root::generate(&td, now).unwrap_or_else(|e| unreachable!("{e}"));
        let again = Root::from_pem(&root.cert_pem, &root.key_pem, &td, Some(now))
            .unwrap_or_else(|e| unreachable!("{e:?}"));
        assert_eq!(again.cert_pem, root.cert_pem);
        assert_eq!(again.not_after, root.not_after);
        // Another trust domain's root is refused.
        let other = TrustDomain::new("other.org").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(matches!(
            Root::from_pem(&root.cert_pem, &root.key_pem, &other, Some(now)),
            Err(RootError::Cert(_))
        ));
        // A key that is not the certificate's is refused.
        let stranger = Root::generate(&td, now).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(matches!(
            Root::from_pem(&root.cert_pem, &stranger.key_pem, &td, Some(now)),
            Err(RootError::Key(_))
        ));
        // Expired.
        assert!(matches!(
            Root::from_pem(
                &root.cert_pem,
                &root.key_pem,
                &td,
                Some(now + ROOT_LIFETIME * 2)
            ),
            Err(RootError::Cert(_))
        ));
    }
}
