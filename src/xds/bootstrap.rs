use crate::config::Locality;
use crate::error::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Where the control plane is and who this client is: the same JSON as
/// gRPC's xDS bootstrap (`GRPC_XDS_BOOTSTRAP`), so one file serves gRPC's
/// proxyless clients and Sinew's.
///
/// ```
/// use sinew::xds::Bootstrap;
///
/// let bootstrap = Bootstrap::from_json(r#"{
///   "xds_servers": [{ "server_uri": "localhost:18000", "channel_creds": [{ "type": "insecure" }] }],
///   "node": { "id": "reviews-1", "locality": { "region": "eu", "zone": "eu-1a" } }
/// }"#)?;
/// assert_eq!(bootstrap.servers[0], "http://localhost:18000");
/// assert_eq!(bootstrap.node_id, "reviews-1");
/// # Ok::<(), sinew::error::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// Control-plane URLs, in order of preference: the first is the
    /// primary, the others are used only while it is unreachable and a
    /// watched resource is not cached (gRFC A71).
    pub servers: Vec<String>,
    /// The node id sent to the control plane.
    pub node_id: String,
    /// The node's cluster (a name for its group of nodes).
    pub node_cluster: String,
    /// Where this node runs, sent to the control plane and used for
    /// zone-aware balancing.
    pub locality: Option<Locality>,
    /// The servers (of `servers`) whose `server_features` list
    /// `fail_on_data_errors` (gRFC A88): from them, a rejected resource or
    /// a Listener or Cluster left out of a response drops the cached value
    /// and fails its requests. From the others, the cached value stays in
    /// use.
    pub fail_on_data_errors: Vec<String>,
    /// The `certificate_providers` (gRFC A29 `file_watcher` instances), by
    /// instance name: the same block grpcio reads. A mesh built from this
    /// bootstrap without an identity of its own takes its certificate from
    /// the instance named `default` (or the only one).
    pub certificate_providers: BTreeMap<String, crate::tls::FileWatcherConfig>,
    /// The name of the Listener a server asks for (gRFC A36), `%s`
    /// standing for its listening address (`127.0.0.1:50051`,
    /// `[::1]:80`): gRPC's `server_listener_resource_name_template`, e.g.
    /// `grpc/server?xds.resource.listening_address=%s`. Without one, a
    /// server asks for none and takes its transport from the mesh's own
    /// `inbound.mtls` (gRPC's servers refuse to start without it; Sinew's
    /// have that fallback).
    pub server_listener_resource_name_template: Option<String>,
    /// The servers (of `servers`) reached over TLS, with their `tls`
    /// channel credentials (gRFC A65): the first credentials of a server's
    /// `channel_creds` that Sinew supports (`tls` or `insecure`) decide.
    /// See [`ChannelTls`](crate::xds::ChannelTls).
    pub channel_tls: BTreeMap<String, crate::xds::ChannelTls>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    xds_servers: Vec<RawServer>,
    #[serde(default)]
    node: RawNode,
    #[serde(default)]
    server_listener_resource_name_template: Option<String>,
}

#[derive(Deserialize)]
struct RawServer {
    server_uri: String,
    #[serde(default)]
    channel_creds: Vec<RawCreds>,
    #[serde(default)]
    server_features: Vec<String>,
}

#[derive(Deserialize)]
struct RawCreds {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

#[derive(Default, Deserialize)]
struct RawNode {
    #[serde(default)]
    id: String,
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    locality: Option<RawLocality>,
}

#[derive(Deserialize)]
struct RawLocality {
    #[serde(default)]
    region: String,
    #[serde(default)]
    zone: String,
}

impl Bootstrap {
    /// A bootstrap for one control plane at `url` (`http://host:port`, or
    /// a bare `host:port`), with a node id made of the host name and the
    /// process id.
    pub fn for_server(url: &str) -> Self {
        Self {
            servers: vec![normalize(url)],
            node_id: default_node_id(),
            node_cluster: String::new(),
            locality: None,
            fail_on_data_errors: Vec::new(),
            certificate_providers: BTreeMap::new(),
            server_listener_resource_name_template: None,
            channel_tls: BTreeMap::new(),
        }
    }

    /// Reads the bootstrap JSON. Server addresses written as bare
    /// `host:port` (as gRPC's files do) get the `http://` scheme.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let deserializer = &mut serde_json::Deserializer::from_str(json);
        let raw: Raw = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            ConfigError::new(format!("bootstrap.{}", e.path()), e.inner().to_string())
        })?;
        if raw
            .server_listener_resource_name_template
            .as_deref()
            .is_some_and(str::is_empty)
        {
            return Err(ConfigError::new(
                "bootstrap.server_listener_resource_name_template",
                "must not be empty",
            ));
        }
        if raw.xds_servers.is_empty() {
            return Err(ConfigError::new(
                "bootstrap.xds_servers",
                "must name at least one server",
            ));
        }
        let mut servers = Vec::with_capacity(raw.xds_servers.len());
        let mut fail_on_data_errors = Vec::new();
        let mut channel_tls = BTreeMap::new();
        for (i, server) in raw.xds_servers.iter().enumerate() {
            let at = format!("bootstrap.xds_servers[{i}]");
            if server.server_uri.is_empty() {
                return Err(ConfigError::new(
                    format!("{at}.server_uri"),
                    "must not be empty",
                ));
            }
            // As gRPC: the first supported credentials decide.
            let chosen = server
                .channel_creds
                .iter()
                .enumerate()
                .find(|(_, c)| c.kind == "insecure" || c.kind == "tls");
            match chosen {
                None if server.channel_creds.is_empty() => {}
                None => {
                    return Err(ConfigError::new(
                        format!("{at}.channel_creds"),
                        "none of these credentials is supported: use `tls` or `insecure`",
                    ));
                }
                Some((_, c)) if c.kind == "insecure" => {}
                Some((j, c)) => {
                    let field = format!("{at}.channel_creds[{j}].config");
                    let tls: crate::xds::ChannelTls = match &c.config {
                        None => crate::xds::ChannelTls::default(),
                        Some(config) => {
                            serde_path_to_error::deserialize(config.clone()).map_err(|e| {
                                let path = e.path().to_string();
                                let at = if path == "." {
                                    field.clone()
                                } else {
                                    format!("{field}.{path}")
                                };
                                ConfigError::new(at, e.inner().to_string())
                            })?
                        }
                    };
                    tls.validate(&field)?;
                    channel_tls.insert(normalize(&server.server_uri), tls);
                }
            }
            servers.push(normalize(&server.server_uri));
            if server
                .server_features
                .iter()
                .any(|f| f == "fail_on_data_errors")
            {
                fail_on_data_errors.push(normalize(&server.server_uri));
            }
        }
        Ok(Self {
            servers,
            node_id: if raw.node.id.is_empty() {
                default_node_id()
            } else {
                raw.node.id
            },
            node_cluster: raw.node.cluster,
            locality: raw.node.locality.map(|l| Locality {
                region: l.region,
                zone: l.zone,
            }),
            fail_on_data_errors,
            certificate_providers: crate::tls::certificate_providers(json)
                .map_err(|e| e.within("bootstrap"))?,
            server_listener_resource_name_template: raw.server_listener_resource_name_template,
            channel_tls,
        })
    }

    /// The certificate provider a mesh takes its identity from: the
    /// instance named `default`, or the only one.
    pub fn certificate_provider(&self) -> Option<&crate::tls::FileWatcherConfig> {
        self.certificate_providers.get("default").or_else(|| {
            let mut all = self.certificate_providers.values();
            match (all.next(), all.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        })
    }

    /// Reads the bootstrap file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        // A bootstrap is a few hundred bytes; a megabyte is plenty.
        let text = crate::config::read_at_most(path, 1 << 20)
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
            .map_err(|e| {
                ConfigError::new("bootstrap", format!("cannot read {}: {e}", path.display()))
            })?;
        Self::from_json(&text)
    }

    /// The bootstrap gRPC's clients would use: the file named by
    /// `GRPC_XDS_BOOTSTRAP`, or the JSON in `GRPC_XDS_BOOTSTRAP_CONFIG`.
    /// `None` when neither is set.
    pub fn from_env() -> Option<Result<Self, ConfigError>> {
        if let Some(path) = std::env::var_os("GRPC_XDS_BOOTSTRAP") {
            return Some(Self::from_file(path));
        }
        std::env::var("GRPC_XDS_BOOTSTRAP_CONFIG")
            .ok()
            .map(|json| Self::from_json(&json))
    }
}

/// gRPC bootstrap files name servers as `host:port`; tonic wants a URI.
fn normalize(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sinew".to_owned());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bootstraps_name_the_field() {
        let error = |json: &str| Bootstrap::from_json(json).err().map(|e| e.to_string());
        assert_eq!(
            error(r#"{"xds_servers": []}"#).as_deref(),
            Some("bootstrap.xds_servers: must name at least one server")
        );
        assert_eq!(
            error(r#"{"xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "google_default"}]}]}"#)
                .as_deref(),
            Some("bootstrap.xds_servers[0].channel_creds: none of these credentials is supported: use `tls` or `insecure`")
        );
        assert!(
            error(r#"{"xds_servers": [{"server_uri": 5}]}"#)
                .is_some_and(|e| e.starts_with("bootstrap.xds_servers[0].server_uri: invalid type"))
        );
        assert_eq!(
            error(r#"{"xds_servers": [{"server_uri": "a:1"}], "server_listener_resource_name_template": ""}"#)
                .as_deref(),
            Some("bootstrap.server_listener_resource_name_template: must not be empty")
        );
        let template = Bootstrap::from_json(
            r#"{"xds_servers": [{"server_uri": "a:1"}], "server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s"}"#,
        );
        assert!(
            template.is_ok_and(|b| b.server_listener_resource_name_template.as_deref()
                == Some("grpc/server?xds.resource.listening_address=%s"))
        );
        assert_eq!(
            error(r#"{"xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "tls", "config": {"certificate_file": "c.pem"}}]}]}"#)
                .as_deref(),
            Some("bootstrap.xds_servers[0].channel_creds[0].config.private_key_file: needed with certificate_file")
        );
        assert!(
            error(r#"{"xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "tls", "config": {"ca_file": "c.pem"}}]}]}"#)
                .is_some_and(|e| e.starts_with("bootstrap.xds_servers[0].channel_creds[0].config.ca_file: unknown field `ca_file`"))
        );
        let tls = Bootstrap::from_json(
            r#"{"xds_servers": [{"server_uri": "cp:18000", "channel_creds": [{"type": "google_default"}, {"type": "tls", "config": {"ca_certificate_file": "/ca.pem"}}, {"type": "insecure"}]}]}"#,
        );
        assert!(tls.is_ok_and(|b| {
            b.channel_tls
                .get("http://cp:18000")
                .is_some_and(|t| t.ca_certificate_file.as_deref() == Some(Path::new("/ca.pem")))
        }));
        let fine = Bootstrap::from_json(
            r#"{"xds_servers": [{"server_uri": "a:1"}, {"server_uri": "https://b:2", "server_features": ["fail_on_data_errors"]}], "node": {"cluster": "web"}}"#,
        );
        assert!(
            fine.as_ref()
                .is_ok_and(|b| b.fail_on_data_errors == ["https://b:2"]
                    && b.server_listener_resource_name_template.is_none())
        );
        assert!(
            fine.as_ref()
                .is_ok_and(|b| b.servers == ["http://a:1", "https://b:2"]
                    && b.node_cluster == "web"
                    && !b.node_id.is_empty())
        );
    }
}
