//! The X.509-SVID leaf rules: what makes a certificate a workload's
//! SPIFFE identity document.

use super::spiffe_id::{SpiffeId, SpiffeIdError};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::time::ASN1Time;

/// Checks that `leaf` (a DER certificate) is a valid X.509-SVID leaf at
/// `now`, and returns its SPIFFE ID.
///
/// The rules, each with its [`SvidError`] variant: exactly one URI SAN,
/// with the `spiffe` scheme, holding a valid SPIFFE ID; basicConstraints
/// CA=false (or absent); keyUsage without keyCertSign or cRLSign; `now`
/// within the validity period. The chain is not checked here: see
/// [`TrustBundle`](super::TrustBundle) and the verifiers.
///
/// ```
/// use sinew::tls::{verify_svid, SvidError};
/// use std::time::SystemTime;
///
/// let err = verify_svid(b"not a certificate", SystemTime::now()).unwrap_err();
/// assert!(matches!(err, SvidError::Malformed(_)));
/// ```
pub fn verify_svid(leaf: &[u8], now: SystemTime) -> Result<SpiffeId, SvidError> {
    Ok(parse_svid(leaf, now)?.id)
}

/// What [`parse_svid`] learns of a leaf.
#[derive(Debug)]
pub(crate) struct Svid {
    pub(crate) id: SpiffeId,
    pub(crate) not_after: SystemTime,
}

pub(crate) fn parse_svid(leaf: &[u8], now: SystemTime) -> Result<Svid, SvidError> {
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|e| SvidError::Malformed(e.to_string()))?;
    let id = uri_san(&cert)?;
    let ca = cert
        .basic_constraints()
        .map_err(|e| SvidError::Malformed(format!("basicConstraints: {e}")))?;
    if ca.is_some_and(|ext| ext.value.ca) {
        return Err(SvidError::CaCertificate);
    }
    let usage = cert
        .key_usage()
        .map_err(|e| SvidError::Malformed(format!("keyUsage: {e}")))?;
    // The X.509-SVID specification: a leaf's keyUsage is present and has
    // digitalSignature, and neither of the CA's bits.
    let Some(usage) = usage else {
        return Err(SvidError::NoDigitalSignature);
    };
    if usage.value.key_cert_sign() {
        return Err(SvidError::KeyCertSign);
    }
    if usage.value.crl_sign() {
        return Err(SvidError::CrlSign);
    }
    if !usage.value.digital_signature() {
        return Err(SvidError::NoDigitalSignature);
    }
    let validity = cert.validity();
    let now_secs = unix_secs(now);
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now_secs < not_before {
        return Err(SvidError::NotYetValid {
            not_before: system_time(not_before),
        });
    }
    if now_secs > not_after {
        return Err(SvidError::Expired {
            not_after: system_time(not_after),
        });
    }
    Ok(Svid {
        id,
        not_after: system_time(not_after),
    })
}

/// The SPIFFE ID of a certificate already verified as an SVID, such as a
/// peer's after the handshake. `None` if it has none.
pub(crate) fn spiffe_id_of(leaf: &[u8]) -> Option<SpiffeId> {
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    uri_san(&cert).ok()
}

fn uri_san(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| SvidError::Malformed(format!("subjectAltName: {e}")))?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let uri = match uris.as_slice() {
        [] => return Err(SvidError::NoUriSan),
        [uri] => *uri,
        many => return Err(SvidError::SeveralUriSans(many.len())),
    };
    let scheme = uri.split_once(':').map_or("", |(scheme, _)| scheme);
    if !scheme.eq_ignore_ascii_case("spiffe") {
        return Err(SvidError::NotSpiffeUri(uri.to_owned()));
    }
    SpiffeId::new(uri).map_err(SvidError::InvalidId)
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Why a certificate is not a valid X.509-SVID leaf: one variant per rule.
///
/// ```
/// use sinew::tls::SvidError;
///
/// let err = SvidError::SeveralUriSans(2);
/// assert_eq!(err.to_string(), "not an X.509-SVID: 2 URI SANs, exactly one is allowed");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SvidError {
    /// Not a parsable X.509 certificate (what the parser said).
    Malformed(String),
    /// The certificate has no URI SAN.
    NoUriSan,
    /// The certificate has more than one URI SAN (how many).
    SeveralUriSans(usize),
    /// The URI SAN's scheme is not `spiffe` (the URI).
    NotSpiffeUri(String),
    /// The URI SAN is a `spiffe:` URI but not a valid SPIFFE ID.
    InvalidId(SpiffeIdError),
    /// basicConstraints says CA=true: a CA certificate used as a leaf.
    CaCertificate,
    /// keyUsage has keyCertSign.
    KeyCertSign,
    /// keyUsage has cRLSign.
    CrlSign,
    /// keyUsage is absent, or lacks digitalSignature.
    NoDigitalSignature,
    /// The certificate expired at `not_after`.
    Expired {
        /// The end of the validity period.
        not_after: SystemTime,
    },
    /// The certificate is valid only from `not_before`.
    NotYetValid {
        /// The start of the validity period.
        not_before: SystemTime,
    },
}

impl fmt::Display for SvidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an X.509-SVID: ")?;
        match self {
            Self::Malformed(why) => write!(f, "malformed certificate: {why}"),
            Self::NoUriSan => f.write_str("no URI SAN"),
            Self::SeveralUriSans(n) => write!(f, "{n} URI SANs, exactly one is allowed"),
            Self::NotSpiffeUri(uri) => write!(f, "the URI SAN {uri:?} is not a spiffe:// URI"),
            Self::InvalidId(e) => write!(f, "the URI SAN is an {e}"),
            Self::CaCertificate => f.write_str("a CA certificate (basicConstraints CA=true)"),
            Self::KeyCertSign => f.write_str("keyUsage has keyCertSign"),
            Self::CrlSign => f.write_str("keyUsage has cRLSign"),
            Self::NoDigitalSignature => f.write_str("keyUsage is absent or lacks digitalSignature"),
            Self::Expired { not_after } => write!(f, "expired at {}", Asn1(*not_after)),
            Self::NotYetValid { not_before } => {
                write!(f, "not valid before {}", Asn1(*not_before))
            }
        }
    }
}

impl std::error::Error for SvidError {}

/// A time shown as certificates show it.
struct Asn1(SystemTime);

impl fmt::Display for Asn1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = unix_secs(self.0);
        match ASN1Time::from_timestamp(secs) {
            Ok(t) => write!(f, "{t}"),
            Err(_) => write!(f, "{secs} s after the Unix epoch"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_conversions_are_inverse() {
        for secs in [-86_400, 0, 1_700_000_000] {
            assert_eq!(unix_secs(system_time(secs)), secs);
        }
    }

    fn leaf(edit: impl FnOnce(&mut rcgen::CertificateParams)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://td/ns/a/sa/b").unwrap(),
        )];
        params.not_before = time::OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(2_000_000).unwrap();
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        edit(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_time_is_the_callers() {
        let der = leaf(|_| {});
        let at = |secs| verify_svid(&der, system_time(secs));
        assert_eq!(at(1_500_000).unwrap().to_string(), "spiffe://td/ns/a/sa/b");
        assert_eq!(at(1_000_000).unwrap().path(), "/ns/a/sa/b");
        assert_eq!(at(2_000_000).unwrap().path(), "/ns/a/sa/b");
        assert_eq!(
            at(999_999),
            Err(SvidError::NotYetValid {
                not_before: system_time(1_000_000)
            })
        );
        assert_eq!(
            at(2_000_001),
            Err(SvidError::Expired {
                not_after: system_time(2_000_000)
            })
        );
    }

    #[test]
    fn key_usage_and_ids() {
        let now = system_time(1_500_000);
        let crl = leaf(|p| {
            p.key_usages = vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::CrlSign,
            ]
        });
        assert_eq!(verify_svid(&crl, now), Err(SvidError::CrlSign));
        let bad_id = leaf(|p| {
            p.subject_alt_names = vec![rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from("spiffe://TD/x").unwrap(),
            )]
        });
        assert_eq!(
            verify_svid(&bad_id, now),
            Err(SvidError::InvalidId(
                SpiffeIdError::BadTrustDomainCharacter('T')
            ))
        );
        let plain = leaf(|p| p.is_ca = rcgen::IsCa::ExplicitNoCa);
        assert!(verify_svid(&plain, now).is_ok());
        let no_usage = leaf(|p| p.key_usages.clear());
        assert_eq!(
            verify_svid(&no_usage, now),
            Err(SvidError::NoDigitalSignature)
        );
        assert!(matches!(
            verify_svid(&[0x30, 0x03], now),
            Err(SvidError::Malformed(_))
        ));
        assert_eq!(
            spiffe_id_of(&plain).unwrap().to_string(),
            "spiffe://td/ns/a/sa/b"
        );
    }

    #[test]
    fn times_display_as_dates() {
        let err = SvidError::Expired {
            not_after: system_time(0),
        };
        assert!(err.to_string().contains("1970"), "{err}");
    }
}
