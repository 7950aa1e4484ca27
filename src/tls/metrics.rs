//! TLS through the `metrics` facade:
//!
//! - `sinew_tls_handshake_failures_total{direction, reason}`: mutual TLS
//!   handshakes that failed, `outbound` (the mesh's clients) or `inbound`
//!   (its servers), by [`FailureReason`];
//! - `sinew_certificate_expiry_timestamp_seconds{certificate}`: when this
//!   workload's certificate (`svid`) and the earliest root of its trust
//!   bundle (`trust_bundle`) expire, as Unix time, set at each rotation.
//!   A timestamp, not a countdown, so that it stays true between
//!   rotations: alert on `sinew_certificate_expiry_timestamp_seconds -
//!   time() < 3600`.
//!
//! Handshakes fail rarely and are far fewer than requests: a failure looks
//! its counter up then.

// The handshakes are the mesh's (its connector and server): the `tls`
// feature alone counts none of them.
#![cfg_attr(not(feature = "mesh"), allow(dead_code))]

use super::identity::Credentials;
use std::error::Error;
use std::time::{SystemTime, UNIX_EPOCH};

/// Failed handshakes.
pub(crate) const HANDSHAKE_FAILURES: &str = "sinew_tls_handshake_failures_total";
/// Expiry of the certificate and of the bundle's roots.
pub(crate) const CERTIFICATE_EXPIRY: &str = "sinew_certificate_expiry_timestamp_seconds";

/// Which side of a handshake this process was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// This process connected (a mesh client).
    Outbound,
    /// This process accepted (a mesh server).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    Inbound,
}

/// Why a handshake failed, as the `reason` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureReason {
    /// This side refused the peer's certificate (chain, SPIFFE ID,
    /// expiry, none presented): `bad_certificate`.
    BadCertificate,
    /// The peer refused this side's certificate or the handshake (a TLS
    /// alert): `peer_refused`.
    PeerRefused,
    /// Not TLS, or TLS this side cannot speak (a plaintext caller, no
    /// common version): `protocol`.
    Protocol,
    /// The handshake did not finish in time: `timeout`.
    Timeout,
    /// The server has no identity to present: `no_identity`.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    NoIdentity,
    /// The connection failed under the handshake: `io`.
    Io,
}

impl FailureReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::BadCertificate => "bad_certificate",
            Self::PeerRefused => "peer_refused",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
            Self::NoIdentity => "no_identity",
            Self::Io => "io",
        }
    }

    /// The reason `error` (a handshake's error) tells, looking through
    /// the `io::Error`s that hide what they wrap from `source()`.
    pub(crate) fn of(error: &(dyn Error + 'static)) -> Self {
        let mut next = Some(error);
        let mut timed_out = false;
        while let Some(err) = next {
            if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                return match tls {
                    rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented => Self::BadCertificate,
                    rustls::Error::AlertReceived(_) => Self::PeerRefused,
                    _ => Self::Protocol,
                };
            }
            if err.downcast_ref::<super::VerifyError>().is_some() {
                return Self::BadCertificate;
            }
            let io = err.downcast_ref::<std::io::Error>();
            timed_out |= io.is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
            next = match io.and_then(|e| e.get_ref()) {
                Some(wrapped) => Some(wrapped),
                None => err.source(),
            };
        }
        if timed_out { Self::Timeout } else { Self::Io }
    }
}

/// Counts a failed handshake.
pub(crate) fn handshake_failed(side: Side, reason: FailureReason) {
    metrics::describe_counter!(
        HANDSHAKE_FAILURES,
        "Mutual TLS handshakes that failed, by direction (outbound, inbound) and reason"
    );
    let direction = match side {
        Side::Outbound => "outbound",
        Side::Inbound => "inbound",
    };
    metrics::counter!(HANDSHAKE_FAILURES, "direction" => direction, "reason" => reason.as_str())
        .increment(1);
}

/// Shows when `credentials` (the ones now in force) expire.
pub(crate) fn credentials_installed(credentials: &Credentials) {
    metrics::describe_gauge!(
        CERTIFICATE_EXPIRY,
        metrics::Unit::Seconds,
        "When this workload's certificate (svid) and its trust bundle's earliest root (trust_bundle) expire, as Unix time"
    );
    metrics::gauge!(CERTIFICATE_EXPIRY, "certificate" => "svid")
        .set(unix_secs(credentials.expires_at()));
    let bundle = credentials.bundle();
    let earliest = bundle
        .trust_domains()
        .flat_map(|td| bundle.roots(td))
        .filter_map(|root| {
            let (_, cert) = x509_parser::parse_x509_certificate(root).ok()?;
            Some(cert.validity().not_after.timestamp())
        })
        .min();
    if let Some(earliest) = earliest {
        metrics::gauge!(CERTIFICATE_EXPIRY, "certificate" => "trust_bundle").set(earliest as f64);
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs() as f64)
}
