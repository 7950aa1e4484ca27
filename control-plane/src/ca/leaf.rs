//! Signing a workload's leaf: an X.509-SVID with the SPIFFE ID as its
//! only URI SAN, CA=false, digitalSignature, serverAuth and clientAuth.
//! The control plane's own serving leaf also carries DNS and IP SANs, so
//! that clients checking a host name (gRPC's `tls` channel credentials)
//! accept it too; SPIFFE verifiers ignore them.

use super::root::{CLOCK_SKEW, Root, serial};
use super::time::datetime;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PublicKeyData, SanType,
};

/// A signed leaf.
#[derive(Debug)]
pub(crate) struct Leaf {
    pub(crate) pem: String,
    /// Unix seconds.
    pub(crate) not_after: u64,
}

/// Signs a leaf for `public_key` as `spiffe_id` with `root`, valid from
/// a little before `now` until `now + ttl` but never past the root;
/// `hosts` (DNS names or IP addresses) become SANs beside the URI.
pub(crate) fn sign(
    root: &Root,
    public_key: &impl PublicKeyData,
    spiffe_id: &str,
    hosts: &[String],
    now: u64,
    ttl: std::time::Duration,
) -> Result<Leaf, String> {
    let mut params = CertificateParams::default();
    // The identity is the URI SAN; the subject carries none.
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Sinew");
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let uri = spiffe_id
        .to_owned()
        .try_into()
        .map_err(|e| format!("the SPIFFE ID: {e}"))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    for host in hosts {
        params
            .subject_alt_names
            .push(match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.clone()
                        .try_into()
                        .map_err(|e| format!("host name `{host}`: {e}"))?,
                ),
            });
    }
    params.use_authority_key_identifier_extension = true;
    let not_after = now.saturating_add(ttl.as_secs()).min(root.not_after);
    params.not_before = datetime(now.saturating_sub(CLOCK_SKEW.as_secs()));
    params.not_after = datetime(not_after);
    params.serial_number = Some(serial()?);
    let cert = params
        .signed_by(public_key, &root.issuer)
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(Leaf {
        pem: cert.pem(),
        not_after,
    })
}
