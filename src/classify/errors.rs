use std::error::Error;

/// True when `error` proves that the request never reached a server
/// application, so that retrying it cannot repeat a side effect.
///
/// It walks the error's source chain looking for:
/// - a connect error from hyper-util's client, or an `io::Error` of kind
///   `ConnectionRefused`;
/// - a request hyper cancelled before sending it;
/// - an HTTP/2 `REFUSED_STREAM` reset, or a graceful GOAWAY (`NO_ERROR`)
///   that covered the stream: streams above the GOAWAY's last stream id are
///   the only ones h2 fails that way, and RFC 9113 §6.8 says the peer did
///   not process them;
/// - a local rejection by one of Sinew's layers (open breaker, full queue,
///   rate or adaptive limit, load shedding, no endpoint to balance to);
/// - a mutual TLS handshake that failed, including a TLS 1.3 server's
///   refusal of the client's certificate, which arrives after the request
///   was written (an `io::Error` of kind `ConnectionRefused` wrapping
///   [`HandshakeFailed`](crate::mesh::HandshakeFailed)). As with
///   `REFUSED_STREAM`, the server is taken at its word: a certificate
///   alert in place of the response says it did not read the request.
pub fn never_processed(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(err) = next {
        if is_never_processed(err) {
            return true;
        }
        next = err.source();
    }
    false
}

fn is_never_processed(err: &(dyn Error + 'static)) -> bool {
    if let Some(e) = err.downcast_ref::<hyper_util::client::legacy::Error>()
        && e.is_connect()
    {
        return true;
    }
    if let Some(e) = err.downcast_ref::<hyper::Error>()
        && e.is_canceled()
    {
        return true;
    }
    if let Some(e) = err.downcast_ref::<h2::Error>() {
        let reason = e.reason();
        if reason == Some(h2::Reason::REFUSED_STREAM) {
            return true;
        }
        if e.is_go_away() && e.is_remote() && reason == Some(h2::Reason::NO_ERROR) {
            return true;
        }
    }
    if let Some(e) = err.downcast_ref::<std::io::Error>()
        && e.kind() == std::io::ErrorKind::ConnectionRefused
    {
        return true;
    }
    #[cfg(feature = "mesh")]
    if err.is::<crate::mesh::HandshakeFailed>() {
        return true;
    }
    is_local_rejection(err)
}

/// Whether `err` is a refusal made on the caller's side before the request
/// was sent, for reasons of the caller's (its deadline already spent, no
/// endpoint to send it to, the cluster's thresholds, mutual TLS the mesh
/// cannot give): the breaker counts
/// it neither way.
pub fn refused_before_sending(err: &(dyn Error + 'static)) -> bool {
    if err
        .downcast_ref::<crate::deadline::DeadlineExceeded>()
        .is_some_and(|e| e.is_unsent())
    {
        return true;
    }
    #[cfg(feature = "mesh")]
    if err.is::<crate::mesh::ClusterOverloaded>()
        || err.is::<crate::mesh::MtlsUnavailable>()
        || matches!(
            err.downcast_ref::<crate::mesh::RouteError>(),
            Some(crate::mesh::RouteError::NoEndpoint(_))
        )
    {
        return true;
    }
    #[cfg(feature = "balance")]
    if err.is::<crate::balance::NoEndpoint>() {
        return true;
    }
    false
}

fn is_local_rejection(err: &(dyn Error + 'static)) -> bool {
    if refused_before_sending(err) {
        return true;
    }
    #[cfg(feature = "breaker")]
    if err.is::<crate::breaker::BreakerOpen>() {
        return true;
    }
    #[cfg(feature = "limit")]
    if err.is::<crate::limit::Overloaded>()
        || err.is::<crate::limit::RateLimited>()
        || err.is::<tower::load_shed::error::Overloaded>()
    {
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn finds_refused_connections_in_the_source_chain() {
        let refused = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(never_processed(&refused));
        let reset = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(!never_processed(&reset));
    }

    #[test]
    fn refused_stream_and_graceful_goaway_are_unprocessed() {
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(never_processed(&refused));
        let internal = h2::Error::from(h2::Reason::INTERNAL_ERROR);
        assert!(!never_processed(&internal));
    }
}
