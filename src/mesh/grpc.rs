use super::{HttpClient, Mesh};

/// A channel for tonic's generated clients: an [`HttpClient`] whose
/// requests carry tonic's body. Made by [`Mesh::grpc_channel`].
pub type GrpcChannel = HttpClient<tonic::body::Body>;

impl Mesh {
    /// A channel to the mesh service `service` for tonic clients
    /// (`GreeterClient::new(mesh.grpc_channel("greeter"))`). The service's
    /// clusters should use `protocol: http2`.
    ///
    /// ```
    /// # async fn f() -> Result<(), sinew::error::ConfigError> {
    /// let mesh = sinew::mesh::Mesh::builder().build().await?;
    /// let channel = mesh.grpc_channel("greeter");
    /// // let client = GreeterClient::with_origin(channel, "http://greeter".parse()?);
    /// # let _ = channel;
    /// # Ok(()) }
    /// ```
    pub fn grpc_channel(&self, service: &str) -> GrpcChannel {
        self.http_client(service)
    }
}
