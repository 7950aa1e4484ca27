use http::{Method, request::Parts};

/// Declares whether one request is idempotent, overriding the method rule.
/// Insert it into the request's extensions.
///
/// ```
/// use sinew::retry::Idempotency;
///
/// let mut request = http::Request::post("http://svc/cart/item/42").body(()).unwrap();
/// // This POST only sets a value: sending it twice is harmless.
/// request.extensions_mut().insert(Idempotency::Idempotent);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Sending the request more than once has the same effect as once.
    Idempotent,
    /// The request must not be repeated once the server may have seen it.
    NonIdempotent,
}

/// RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT and DELETE are
/// idempotent. A request extension wins over the method, and the route
/// setting wins over the method when no extension says otherwise.
#[inline]
pub(super) fn is_idempotent(parts: &Parts, assume_idempotent: bool) -> bool {
    match parts.extensions.get::<Idempotency>() {
        Some(Idempotency::Idempotent) => true,
        Some(Idempotency::NonIdempotent) => false,
        None => {
            assume_idempotent
                || matches!(
                    parts.method,
                    Method::GET
                        | Method::HEAD
                        | Method::OPTIONS
                        | Method::TRACE
                        | Method::PUT
                        | Method::DELETE
                )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, ext: Option<Idempotency>) -> Parts {
        let mut request = http::Request::new(());
        *request.method_mut() = method;
        if let Some(ext) = ext {
            request.extensions_mut().insert(ext);
        }
        request.into_parts().0
    }

    #[test]
    fn method_route_and_extension() {
        assert!(is_idempotent(&parts(Method::GET, None), false));
        assert!(!is_idempotent(&parts(Method::POST, None), false));
        assert!(is_idempotent(&parts(Method::POST, None), true));
        assert!(is_idempotent(
            &parts(Method::POST, Some(Idempotency::Idempotent)),
            false
        ));
        assert!(!is_idempotent(
            &parts(Method::GET, Some(Idempotency::NonIdempotent)),
            true
        ));
    }
}
