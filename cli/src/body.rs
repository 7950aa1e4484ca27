//! Reading a response body with a limit: a server that sends more than
//! `--max-body-bytes` fails that request instead of filling memory or
//! keeping the call running forever.

use bytes::Buf;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Reads `body` to its end and returns its first `keep` bytes (all a report
/// shows); fails once the body is over `limit` bytes, or says it will be.
pub(crate) async fn read<B>(body: B, limit: usize, keep: usize) -> Result<Vec<u8>, String>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut head = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                format!("the response body is over --max-body-bytes ({limit} bytes)")
            } else {
                format!("reading the body: {e}")
            }
        })?;
        if let Ok(mut data) = frame.into_data() {
            while head.len() < keep && data.has_remaining() {
                let chunk = data.chunk();
                let n = chunk.len().min(keep - head.len());
                head.extend_from_slice(&chunk[..n]);
                data.advance(n);
            }
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn keeps_the_head_and_refuses_what_is_over_the_limit() {
        let head = read(Full::new(Bytes::from_static(b"hello world")), 11, 5).await;
        assert_eq!(head.as_deref(), Ok(&b"hello"[..]));
        let over = read(Full::new(Bytes::from_static(b"hello world")), 10, 5).await;
        assert_eq!(
            over,
            Err("the response body is over --max-body-bytes (10 bytes)".to_owned())
        );
        // A body of unknown length, in frames: found over as it arrives.
        let frames = futures_util::stream::iter([&b"hello "[..], &b"world"[..]].map(|d| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(d)))
        }));
        let over = read(StreamBody::new(frames), 8, 5).await;
        assert!(over.is_err(), "{over:?}");
    }
}
