/// A request found no endpoint to go to: the [`EndpointSet`](super::EndpointSet)
/// was empty. The request was not sent, so
/// [`never_processed`](crate::classify::never_processed) holds for it and
/// a retry is safe.
///
/// ```
/// use sinew::balance::{Balance, EndpointSet, NoEndpoint};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let inner = tower::service_fn(|_: http::Request<()>| async {
///     let body = http_body_util::Empty::<bytes::Bytes>::new();
///     Ok::<_, std::convert::Infallible>(http::Response::new(body))
/// });
/// let empty = EndpointSet::default();
/// let error = Balance::new(inner, empty)
///     .oneshot(http::Request::new(()))
///     .await
///     .unwrap_err();
/// assert!(error.is::<NoEndpoint>());
/// assert!(sinew::classify::never_processed(&*error));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoEndpoint {
    _private: (),
}

impl NoEndpoint {
    pub(super) fn new() -> Self {
        Self { _private: () }
    }
}

impl std::fmt::Display for NoEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no endpoint to send the request to")
    }
}

impl std::error::Error for NoEndpoint {}
