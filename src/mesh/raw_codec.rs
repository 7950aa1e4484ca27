use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A gRPC codec for raw message bytes: calls a method without its
/// generated types (a proxy, a command-line caller, a test).
///
/// ```
/// # async fn f(mesh: sinew::mesh::Mesh) -> Result<(), tonic::Status> {
/// let mut grpc = tonic::client::Grpc::new(mesh.grpc_channel("greeter"));
/// grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
/// let path = http::uri::PathAndQuery::from_static("/helloworld.Greeter/SayHello");
/// let request = tonic::Request::new(bytes::Bytes::from_static(b"\\x0a\\x03bob"));
/// let reply = grpc.unary(request, path, sinew::mesh::RawCodec).await?;
/// # let _ = reply; Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
