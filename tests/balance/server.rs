//! Real hyper servers on loopback, each answering with its own name.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub type Body = BoxBody<Bytes, Infallible>;

/// A running server; dropping it stops accepting and closes its
/// connections.
pub struct Server {
    pub addr: SocketAddr,
    /// Requests it answered.
    pub served: Arc<AtomicUsize>,
    _stop: watch::Sender<()>,
}

impl Server {
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// A server answering 200 with its address as the body.
pub async fn named() -> Server {
    serve(|_, addr| async move { Response::new(text(addr.to_string())) }).await
}

pub fn text(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

/// Serves `handle` (HTTP/1.1 and HTTP/2) on a fresh loopback port; it gets
/// each request and the server's own address.
pub async fn serve<F, Fut>(handle: F) -> Server
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let served = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = watch::channel(());
    let count = served.clone();
    tokio::spawn(async move {
        let mut stopped_accepting = stopped.clone();
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(_) => continue,
                },
                _ = stopped_accepting.changed() => return,
            };
            let _ = stream.set_nodelay(true);
            let (handle, count) = (handle.clone(), count.clone());
            let service = hyper::service::service_fn(move |request| {
                count.fetch_add(1, Ordering::SeqCst);
                let answer = handle(request, addr);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = stopped.changed() => {}
                }
            });
        }
    });
    Server {
        addr,
        served,
        _stop: stop,
    }
}
