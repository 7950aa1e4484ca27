//! The reject matrix's broken leaves, one per X.509-SVID rule (and trust
//! failure), each with the refusal reason it must produce. Shared by the
//! TLS core's tests and the mesh server's.

use crate::certs::{Ca, Issued, Leaf};
use sinew::tls::{SvidError, VerifyError};
use time::{Duration, OffsetDateTime};

pub type Check = fn(&VerifyError) -> bool;

pub struct Case {
    pub name: &'static str,
    pub issued: Issued,
    pub expect: Check,
}

/// The broken leaves, each claiming to be `spiffe_id` unless the case is
/// about the ID.
pub fn cases(ca: &Ca, spiffe_id: &str) -> Vec<Case> {
    let other_ca = Ca::root("another root");
    let now = OffsetDateTime::now_utc();
    let leaf = Leaf::svid(spiffe_id);
    let with = |f: &dyn Fn(&mut Leaf)| {
        let mut l = leaf.clone();
        f(&mut l);
        l
    };
    vec![
        Case {
            name: "wrong CA",
            issued: other_ca.issue(&leaf),
            expect: |e| matches!(e, VerifyError::UntrustedChain { .. }),
        },
        Case {
            name: "wrong trust domain",
            issued: other_ca.issue(&Leaf::svid("spiffe://elsewhere.org/ns/shop/sa/cart")),
            expect: |e| {
                matches!(e, VerifyError::UnknownTrustDomain { peer }
                    if peer.trust_domain().as_str() == "elsewhere.org")
            },
        },
        Case {
            name: "two URI SANs",
            issued: ca.issue(&with(&|l| l.uris.push(format!("{spiffe_id}2")))),
            expect: |e| matches!(e, VerifyError::Svid(SvidError::SeveralUriSans(2))),
        },
        Case {
            name: "a non-spiffe URI",
            issued: ca.issue(&with(&|l| l.uris = vec!["https://cart.shop/".into()])),
            expect: |e| matches!(e, VerifyError::Svid(SvidError::NotSpiffeUri(uri)) if uri == "https://cart.shop/"),
        },
        Case {
            name: "no URI SAN",
            issued: ca.issue(&with(&|l| {
                l.uris.clear();
                l.dns = vec!["cart.shop".into()];
            })),
            expect: |e| matches!(e, VerifyError::Svid(SvidError::NoUriSan)),
        },
        Case {
            name: "a CA certificate as a leaf",
            issued: ca.issue(&with(&|l| l.is_ca = true)),
            expect: |e| matches!(e, VerifyError::Svid(SvidError::CaCertificate)),
        },
        Case {
            name: "a leaf with keyCertSign",
            issued: ca.issue(&with(&|l| l.key_cert_sign = true)),
            expect: |e| matches!(e, VerifyError::Svid(SvidError::KeyCertSign)),
        },
        Case {
            name: "expired",
            issued: ca.issue(&with(&|l| {
                l.not_before = now - Duration::hours(2);
                l.not_after = now - Duration::hours(1);
            })),
            expect: |e| matches!(e, VerifyError::Svid(SvidError::Expired { .. })),
        },
        Case {
            name: "not yet valid",
            issued: ca.issue(&with(&|l| {
                l.not_before = now + Duration::hours(1);
                l.not_after = now + Duration::hours(2);
            })),
            expect: |e| matches!(e, VerifyError::Svid(SvidError::NotYetValid { .. })),
        },
    ]
}
