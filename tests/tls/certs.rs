//! Certificates made for the tests with rcgen: CAs per trust domain and
//! leaves that keep or break each X.509-SVID rule.

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sinew::tls::{SpiffeId, TrustBundle, TrustDomain};
use time::{Duration, OffsetDateTime};

/// A certificate authority: a root, or an intermediate under one.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// This CA's certificate, then its issuers' up to (excluding) the root.
    chain_tail: Vec<CertificateDer<'static>>,
    /// `chain_tail` as PEM.
    chain_tail_pem: String,
    /// The root's certificate.
    root: CertificateDer<'static>,
    pub root_pem: String,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(1);
    params
}

impl Ca {
    pub fn root(name: &str) -> Ca {
        let params = ca_params(name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            root_pem: cert.pem(),
            root: cert.der().clone(),
            params,
            key,
            chain_tail: Vec::new(),
            chain_tail_pem: String::new(),
        }
    }

    pub fn intermediate(&self, name: &str) -> Ca {
        let params = ca_params(name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        let mut chain_tail = vec![cert.der().clone()];
        chain_tail.extend(self.chain_tail.iter().cloned());
        Ca {
            params,
            key,
            chain_tail,
            chain_tail_pem: format!("{}{}", cert.pem(), self.chain_tail_pem),
            root: self.root.clone(),
            root_pem: self.root_pem.clone(),
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A bundle trusting this CA's root for `td`.
    pub fn bundle(&self, td: &str) -> TrustBundle {
        let mut bundle = TrustBundle::new();
        bundle
            .add_roots(&TrustDomain::new(td).unwrap(), vec![self.root.clone()])
            .unwrap();
        bundle
    }

    pub fn issue(&self, leaf: &Leaf) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "workload");
        params.subject_alt_names = leaf
            .uris
            .iter()
            .map(|u| SanType::URI(Ia5String::try_from(u.as_str()).unwrap()))
            .chain(
                leaf.dns
                    .iter()
                    .map(|d| SanType::DnsName(Ia5String::try_from(d.as_str()).unwrap())),
            )
            .collect();
        params.is_ca = if leaf.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if leaf.key_cert_sign {
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        params.not_before = leaf.not_before;
        params.not_after = leaf.not_after;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain_tail.iter().cloned());
        let cert_pem = format!("{}{}", cert.pem(), self.chain_tail_pem);
        Issued {
            chain,
            key_der: key.serialize_der(),
            cert_pem,
            key_pem: key.serialize_pem(),
        }
    }
}

/// What a leaf looks like; `Leaf::svid(id)` keeps every rule.
#[derive(Clone)]
pub struct Leaf {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub is_ca: bool,
    pub key_cert_sign: bool,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Leaf {
    pub fn svid(id: &str) -> Leaf {
        Leaf {
            uris: vec![id.to_owned()],
            dns: Vec::new(),
            is_ca: false,
            key_cert_sign: false,
            not_before: OffsetDateTime::now_utc() - Duration::minutes(10),
            not_after: OffsetDateTime::now_utc() + Duration::hours(1),
        }
    }
}

/// An issued leaf: its chain (leaf first) and key.
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

pub fn id(text: &str) -> SpiffeId {
    text.parse().unwrap()
}
