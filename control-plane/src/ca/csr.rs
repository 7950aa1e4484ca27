//! Reading a workload's certificate signing request: PEM PKCS#10 whose
//! signature verifies (the caller holds the key it asks a certificate
//! for), and the URI SANs it asks for.

use rcgen::{CertificateSigningRequestParams, SanType};

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
