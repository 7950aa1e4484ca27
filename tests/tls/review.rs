//! Defects found in review, each proved by a test that fails until it is
//! fixed.

use super::CLIENT_ID;

/// The X.509-SVID specification: a leaf MUST set digitalSignature (it
/// signs the handshake; go-spiffe refuses a leaf without it). A leaf
/// whose keyUsage is only keyEncipherment, or that has no keyUsage at
/// all, is not an SVID.
#[test]
fn a_leaf_without_digital_signature_is_not_an_svid() {
    let now = std::time::SystemTime::now();
    let leaf = |usages: Vec<rcgen::KeyUsagePurpose>| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(CLIENT_ID).unwrap(),
        )];
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = usages;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    };
    let signing = leaf(vec![rcgen::KeyUsagePurpose::DigitalSignature]);
    assert!(sinew::tls::verify_svid(&signing, now).is_ok());
    for (what, der) in [
        (
            "keyEncipherment only",
            leaf(vec![rcgen::KeyUsagePurpose::KeyEncipherment]),
        ),
        ("no keyUsage", leaf(Vec::new())),
    ] {
        assert!(
            sinew::tls::verify_svid(&der, now).is_err(),
            "a leaf with {what} was accepted as an X.509-SVID"
        );
    }
}
