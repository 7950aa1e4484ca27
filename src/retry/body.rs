use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// A request body that can be sent more than once.
///
/// The first attempt streams the original body and keeps a copy of each
/// chunk, up to a cap. A later attempt replays the copy, then goes on
/// streaming the original where the earlier attempt stopped. Once the body
/// grows past the cap the copy is dropped and the request can no longer be
/// retried ([`ReplayBody::is_replayable`]).
///
/// Nothing is buffered ahead of the attempt that sends it, so streaming
/// requests (gRPC client streams included) are never delayed. An empty
/// body costs nothing.
pub struct ReplayBody<B> {
    inner: Inner<B>,
}

enum Inner<B> {
    Empty,
    Shared(Replay<B>),
}

struct Replay<B> {
    tee: Arc<Mutex<Tee<B>>>,
    /// Index of the next kept chunk this copy replays.
    next: usize,
    trailers_sent: bool,
    /// Bytes this copy has yielded, for the size hint.
    yielded: u64,
    hint: SizeHint,
}

struct Tee<B> {
    body: Pin<Box<B>>,
    chunks: Vec<Bytes>,
    kept: usize,
    cap: usize,
    overflowed: bool,
    ended: bool,
    trailers: Option<HeaderMap>,
}

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, keeping up to `cap` bytes for replay.
    #[inline]
    pub fn new(body: B, cap: usize) -> Self {
        if body.is_end_stream() {
            return Self {
                inner: Inner::Empty,
            };
        }
        let hint = body.size_hint();
        let overflowed = hint.lower() > cap as u64;
        Self {
            inner: Inner::Shared(Replay {
                tee: Arc::new(Mutex::new(Tee {
                    body: Box::pin(body),
                    chunks: Vec::new(),
                    kept: 0,
                    cap,
                    overflowed,
                    ended: false,
                    trailers: None,
                })),
                next: 0,
                trailers_sent: false,
                yielded: 0,
                hint,
            }),
        }
    }

    /// True while the body can still be sent again: it has not outgrown
    /// the cap.
    pub fn is_replayable(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Shared(r) => !lock(&r.tee).overflowed,
        }
    }

    /// A copy that starts from the beginning of the body.
    ///
    /// Only one copy should be streaming the original at a time: hedging
    /// uses [`ReplayBody::buffer_all`] first, so that every copy replays.
    #[inline]
    pub(super) fn replay(&self) -> Self {
        let inner = match &self.inner {
            Inner::Empty => Inner::Empty,
            Inner::Shared(r) => Inner::Shared(Replay {
                tee: r.tee.clone(),
                next: 0,
                trailers_sent: false,
                yielded: 0,
                hint: r.hint,
            }),
        };
        Self { inner }
    }

    /// Reads the whole body into the copy, when it is known to fit under
    /// the cap. Returns false (reading nothing) when it may not fit.
    pub(super) async fn buffer_all(&self) -> Result<bool, B::Error> {
        let Inner::Shared(r) = &self.inner else {
            return Ok(true);
        };
        let fits = { r.hint.exact().is_some_and(|n| n <= lock(&r.tee).cap as u64) };
        if !fits {
            return Ok(false);
        }
        std::future::poll_fn(|cx| {
            let mut tee = lock(&r.tee);
            while !tee.ended && !tee.overflowed {
                match tee.poll_original(cx) {
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(_) => {}
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(!tee.overflowed))
        })
        .await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned tee only means another attempt panicked mid-poll; the
    // kept chunks are still whole.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl<B: Body> Tee<B> {
    /// Polls the original body once, keeping what it yields.
    fn poll_original(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = match self.body.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                self.ended = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let chunk = data.copy_to_bytes(data.remaining());
                if !self.overflowed {
                    self.kept += chunk.len();
                    if self.kept > self.cap {
                        self.overflowed = true;
                        self.chunks = Vec::new();
                    } else {
                        self.chunks.push(chunk.clone());
                    }
                }
                Frame::data(chunk)
            }
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => {
                    self.trailers = Some(trailers.clone());
                    self.ended = true;
                    Frame::trailers(trailers)
                }
                Err(_unknown) => return Poll::Ready(None),
            },
        };
        if self.body.is_end_stream() {
            self.ended = true;
        }
        Poll::Ready(Some(Ok(frame)))
    }
}

impl<B: Body> Body for ReplayBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Inner::Shared(r) = &mut self.get_mut().inner else {
            return Poll::Ready(None);
        };
        let mut tee = lock(&r.tee);
        if let Some(chunk) = tee.chunks.get(r.next) {
            r.next += 1;
            r.yielded += chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        if tee.ended {
            if !r.trailers_sent {
                r.trailers_sent = true;
                if let Some(trailers) = &tee.trailers {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                }
            }
            return Poll::Ready(None);
        }
        let polled = tee.poll_original(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                r.yielded += data.len() as u64;
                // This copy has the chunk already; don't replay it again.
                r.next = tee.chunks.len();
            } else {
                r.trailers_sent = true;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Shared(r) => {
                let tee = lock(&r.tee);
                tee.ended
                    && r.next >= tee.chunks.len()
                    && (r.trailers_sent || tee.trailers.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Shared(r) => {
                let mut hint = SizeHint::new();
                hint.set_lower(r.hint.lower().saturating_sub(r.yielded));
                if let Some(upper) = r.hint.upper() {
                    hint.set_upper(upper.saturating_sub(r.yielded));
                }
                hint
            }
        }
    }
}

impl<B> std::fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBody")
            .field("empty", &matches!(self.inner, Inner::Empty))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(
        parts: &[&'static str],
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + use<> {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    async fn read<B: Body<Data = Bytes>>(body: B) -> Vec<u8>
    where
        B::Error: std::fmt::Debug,
    {
        body.collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn replays_what_the_first_attempt_sent() {
        let body = ReplayBody::new(chunks(&["hello ", "wor", "ld"]), 64);
        let first = body.replay();
        assert_eq!(read(first).await, b"hello world");
        assert!(body.is_replayable());
        assert_eq!(read(body.replay()).await, b"hello world");
    }

    #[tokio::test]
    async fn a_retry_resumes_a_partly_sent_body() {
        let body = ReplayBody::new(chunks(&["a", "b", "c"]), 64);
        let mut first = body.replay();
        let frame = first.frame().await;
        assert!(matches!(frame, Some(Ok(ref f)) if f.data_ref().is_some_and(|d| d == "a")));
        drop(first);
        assert_eq!(read(body.replay()).await, b"abc");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_streams_once_and_is_not_replayable() {
        let body = ReplayBody::new(chunks(&["0123", "4567", "89"]), 6);
        assert_eq!(read(body.replay()).await, b"0123456789");
        assert!(!body.is_replayable());
        let full = ReplayBody::new(
            http_body_util::Full::new(Bytes::from_static(b"0123456789")),
            6,
        );
        assert!(!full.is_replayable(), "known too large up front");
    }

    #[tokio::test]
    async fn buffers_small_bodies_for_hedging() {
        let body = ReplayBody::new(http_body_util::Full::new(Bytes::from_static(b"xyz")), 8);
        assert_eq!(body.buffer_all().await.ok(), Some(true));
        let (a, b) = (body.replay(), body.replay());
        assert_eq!(read(a).await, b"xyz");
        assert_eq!(read(b).await, b"xyz");
        let streaming = ReplayBody::new(chunks(&["x"]), 8);
        assert_eq!(streaming.buffer_all().await.ok(), Some(false));
    }

    #[tokio::test]
    async fn empty_bodies_need_no_state() {
        let body = ReplayBody::new(http_body_util::Empty::<Bytes>::new(), 8);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
