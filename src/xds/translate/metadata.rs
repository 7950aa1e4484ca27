//! What Envoy's resources have no field for, read from their `sinew`
//! filter metadata: a cluster's service breaker and a route's or a
//! cluster's outcome classifier. Other metadata (other filters' keys,
//! other keys under `sinew`) is passed over, as gRPC does.

use super::Invalid;
use crate::breaker::BreakerConfig;
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

/// The filter metadata key Sinew reads (and its control plane writes).
pub(crate) const KEY: &str = "sinew";

/// The `sinew` struct of a resource's metadata, when there is one.
pub(super) fn fields(metadata: Option<&Metadata>) -> Option<&Struct> {
    metadata.and_then(|m| m.filter_metadata.get(KEY))
}

/// `classifier`: the name of a registered classifier.
pub(super) fn classifier(fields: Option<&Struct>) -> Result<Option<String>, Invalid> {
    let at = format!("metadata.filter_metadata.{KEY}.classifier");
    match fields.and_then(|f| f.fields.get("classifier")) {
        None => Ok(None),
        Some(Value {
            kind: Some(Kind::StringValue(name)),
        }) => match crate::classify::check_name(name) {
            Ok(()) => Ok(Some(name.clone())),
            Err(message) => Err(format!("{at}: {message}")),
        },
        Some(_) => Err(format!("{at}: must be a string")),
    }
}

/// `breaker`: a struct with the mesh file's breaker fields (durations as
/// text, `5s`), checked as the mesh file's are.
pub(super) fn breaker(fields: Option<&Struct>) -> Result<Option<BreakerConfig>, Invalid> {
    let at = format!("metadata.filter_metadata.{KEY}.breaker");
    let Some(value) = fields.and_then(|f| f.fields.get("breaker")) else {
        return Ok(None);
    };
    let json = match &value.kind {
        Some(kind @ Kind::StructValue(_)) => {
            to_json(kind).map_err(|(path, message)| format!("{at}{path}: {message}"))?
        }
        _ => return Err(format!("{at}: must be a struct")),
    };
    let config: BreakerConfig = serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            String::new()
        } else {
            format!(".{path}")
        };
        format!("{at}{path}: {}", e.inner())
    })?;
    // Named `breaker.<field>` by the breaker's own check.
    config
        .validate()
        .map_err(|e| format!("metadata.filter_metadata.{KEY}.{e}"))?;
    Ok(Some(config))
}

/// A protobuf `Value` as JSON, for serde: whole numbers as integers (the
/// breaker's counts are integers; `Struct` has only doubles). An error
/// gives the path below the value and what is wrong.
fn to_json(kind: &Kind) -> Result<serde_json::Value, (String, String)> {
    use serde_json::Value as Json;
    Ok(match kind {
        Kind::NullValue(_) => Json::Null,
        Kind::BoolValue(b) => Json::Bool(*b),
        Kind::StringValue(s) => Json::String(s.clone()),
        Kind::NumberValue(n) => {
            number(*n).ok_or_else(|| (String::new(), "must be a finite number".to_owned()))?
        }
        Kind::StructValue(s) => {
            let mut map = serde_json::Map::with_capacity(s.fields.len());
            for (key, value) in &s.fields {
                let json = value_to_json(value)
                    .map_err(|(path, message)| (format!(".{key}{path}"), message))?;
                map.insert(key.clone(), json);
            }
            Json::Object(map)
        }
        Kind::ListValue(list) => Json::Array(
            list.values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    value_to_json(v).map_err(|(path, message)| (format!("[{i}]{path}"), message))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn value_to_json(value: &Value) -> Result<serde_json::Value, (String, String)> {
    match &value.kind {
        Some(kind) => to_json(kind),
        None => Ok(serde_json::Value::Null),
    }
}

/// Whole numbers (up to 2^53, where doubles stop being exact) as integers.
fn number(n: f64) -> Option<serde_json::Value> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        // In range and whole: the conversion is exact.
        return Some(serde_json::Value::from(n as i64));
    }
    serde_json::Number::from_f64(n).map(serde_json::Value::Number)
}
