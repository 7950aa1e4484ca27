use super::MeshConfig;
use crate::error::ConfigError;

impl MeshConfig {
    /// Reads a YAML document. A syntax or type error names the path of the
    /// field where it occurred.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(path_error)
    }

    /// Reads a JSON document. A syntax or type error names the path of the
    /// field where it occurred.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut deserializer).map_err(path_error)
    }

    /// Reads a file: JSON when its name ends in `.json`, YAML otherwise.
    /// Errors name the field, or `config_file` when the file cannot be
    /// read.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let contents = super::read_limited(path).map_err(|e| {
            ConfigError::new(
                "config_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::from_file_contents(path, &contents)
    }

    /// Parses `contents` as the file at `path` would be read by
    /// [`from_file`](Self::from_file).
    pub fn from_file_contents(
        path: impl AsRef<std::path::Path>,
        contents: &[u8],
    ) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::str::from_utf8(contents).map_err(|_| {
            ConfigError::new("config_file", format!("{} is not UTF-8", path.display()))
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if json {
            Self::from_json(text)
        } else {
            Self::from_yaml(text)
        }
    }

    /// Writes the configuration as YAML.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_yaml_ng::to_string(self).map_err(|e| ConfigError::new("config", e.to_string()))
    }
}

fn path_error<E: std::fmt::Display>(error: serde_path_to_error::Error<E>) -> ConfigError {
    let path = error.path().to_string();
    let path = if path == "." {
        String::from("config")
    } else {
        path
    };
    // Some deserializers put the path (or, for an unknown field, its
    // parent's) in their own message too.
    let message = error.inner().to_string();
    let message = match message.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && path.starts_with(head) => rest.to_owned(),
        _ => message,
    };
    ConfigError::new(path, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_name_the_field() {
        let yaml =
            "services:\n  reviews:\n    routes:\n      - split: [{ cluster: a, weight: lots }]\n";
        let err = MeshConfig::from_yaml(yaml).err();
        assert_eq!(
            err.as_ref().map(ConfigError::field),
            Some("services.reviews.routes[0].split[0].weight")
        );
        let json = r#"{"clusters": {"a": {"lb": {"policy": "fastest"}}}}"#;
        let err = MeshConfig::from_json(json).err();
        assert_eq!(
            err.as_ref().map(ConfigError::field),
            Some("clusters.a.lb.policy")
        );
        let err = MeshConfig::from_yaml("servces: {}").err();
        assert!(err.is_some_and(|e| e.message().contains("unknown field `servces`")));
    }

    #[test]
    fn yaml_and_json_read_the_same_model() {
        let yaml = "clusters:\n  a:\n    protocol: http2\n    endpoints:\n      - address: 127.0.0.1:80\n        locality: { region: eu, zone: eu-1 }\n";
        let json = r#"{"clusters":{"a":{"protocol":"http2","endpoints":[{"address":"127.0.0.1:80","locality":{"region":"eu","zone":"eu-1"}}]}}}"#;
        let (a, b) = (
            MeshConfig::from_yaml(yaml).ok(),
            MeshConfig::from_json(json).ok(),
        );
        assert!(a.is_some());
        assert_eq!(a, b);
        let round_trip = a
            .as_ref()
            .and_then(|c| c.to_yaml().ok())
            .and_then(|text| MeshConfig::from_yaml(&text).ok());
        assert_eq!(round_trip, b);
    }
}
