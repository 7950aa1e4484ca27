//! Reading a workload's certificate signing request: PEM PKCS#10 whose
//! signature verifies (the caller holds the key it asks a certificate
//! for), and the URI SANs it asks for.

use rcgen::{CertificateSigningRequestParams, PublicKeyData, SanType};
use x509_parser::prelude::FromDer;

/// A verified request.
#[derive(Debug)]
pub(crate) struct Csr {
    /// The key the certificate is for.
    pub(crate) public_key: rcgen::PublicKey,
    /// The URI SANs asked for.
    pub(crate) uris: Vec<String>,
}

/// The request in `pem`; the error names what is wrong with it.
pub(crate) fn parse(pem: &str) -> Result<Csr, String> {
    let params = CertificateSigningRequestParams::from_pem(pem).map_err(|e| match e {
        rcgen::Error::CouldNotParseCertificationRequest => {
            "csr: not a PEM PKCS#10 certificate request".to_owned()
        }
        rcgen::Error::InvalidCertificationRequestSignature => {
            "csr: its signature does not verify (it must be signed by the key it carries)"
                .to_owned()
        }
        rcgen::Error::UnsupportedExtension => {
            "csr: asks for an extension the CA does not take (only subjectAltName, keyUsage, extendedKeyUsage, basicConstraints)".to_owned()
        }
        other => format!("csr: {other}"),
    })?;
    check_key(pem, &params.public_key)?;
    let mut uris = Vec::new();
    for san in params.params.subject_alt_names {
        match san {
            SanType::URI(uri) => uris.push(uri.as_str().to_owned()),
            other => {
                return Err(format!(
                    "csr.subjectAltName: only a URI SAN (the SPIFFE ID) is signed, not {other:?}"
                ));
            }
        }
    }
    Ok(Csr {
        public_key: params.public_key,
        uris,
    })
}

/// The key must be one the leaf can carry as it is: rcgen rebuilds the
/// key's description from the request's signature algorithm, which for
/// ECDSA names the hash, not the curve. A P-384 key signed with SHA-256
/// would come out as a P-256 key, so the rebuilt description must equal
/// the request's own. RSA is not signed: a workload's key is made
/// in-process, and ECDSA P-256 is what every peer takes.
fn check_key(pem: &str, key: &rcgen::PublicKey) -> Result<(), String> {
    let supported = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ];
    let refused = || {
        "csr: the key must be ECDSA P-256 (signed with SHA-256), ECDSA P-384 (SHA-384) or Ed25519"
            .to_owned()
    };
    if !supported.contains(&key.algorithm()) {
        return Err(refused());
    }
    let der = ::pem::parse(pem).map_err(|_| "csr: not PEM".to_owned())?;
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.contents())
            .map_err(|_| "csr: not a PKCS#10 certificate request".to_owned())?;
    let own = request.certification_request_info.subject_pki.raw;
    if own != key.subject_public_key_info().as_slice() {
        return Err(refused());
    }
    Ok(())
}
