//! The fault-injection filter (Envoy's `HTTPFault`, gRFC A33): a default in
//! the HttpConnectionManager's filter list, overridden per virtual host or
//! route by `typed_per_filter_config`.

use super::{Invalid, duration, within};
use crate::config::{FaultAbort, FaultConfig, FaultDelay};
use crate::grpc::Code;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use std::collections::HashMap;

pub(crate) const HTTP_FAULT: &str =
    "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// The fault configuration among `typed_per_filter_config`, if any.
pub(crate) fn override_in(
    per_filter: &HashMap<String, Any>,
) -> Result<Option<FaultConfig>, Invalid> {
    for (name, any) in per_filter {
        if any.type_url == HTTP_FAULT {
            let at = format!("typed_per_filter_config[{name}]");
            return fault(&any.value).map(Some).map_err(within(&at));
        }
    }
    Ok(None)
}

/// One `HTTPFault` message. Faults whose delay or abort comes from request
/// headers are left out (nothing is injected for them); faults limited to
/// requests with certain headers or from certain nodes are refused, since
/// injecting them into every request would be wrong.
pub(crate) fn fault(bytes: &[u8]) -> Result<FaultConfig, Invalid> {
    let f = HttpFault::decode(bytes).map_err(|e| format!("cannot decode HTTPFault: {e}"))?;
    if !f.headers.is_empty() {
        return Err("headers: faults limited by headers are not supported".to_owned());
    }
    if !f.downstream_nodes.is_empty() {
        return Err("downstream_nodes: not supported".to_owned());
    }
    let delay = match f.delay {
        Some(d) => match d.fault_delay_secifier {
            Some(FaultDelaySecifier::FixedDelay(fixed)) => Some(FaultDelay {
                fixed: duration("delay.fixed_delay", &fixed)?,
                percent: percent(d.percentage.as_ref()),
            }),
            _ => None,
        },
        None => None,
    };
    let abort = match f.abort {
        Some(a) => {
            let percent = percent(a.percentage.as_ref());
            match a.error_type {
                Some(ErrorType::HttpStatus(status)) => {
                    if !(200..=599).contains(&status) {
                        return Err("abort.http_status: must be between 200 and 599".to_owned());
                    }
                    Some(FaultAbort {
                        http_status: Some(status as u16),
                        grpc_status: None,
                        percent,
                    })
                }
                Some(ErrorType::GrpcStatus(code)) if (1..=16).contains(&code) => {
                    let code = Code::from_header_value(code.to_string().as_bytes())
                        .unwrap_or(Code::UNKNOWN);
                    Some(FaultAbort {
                        http_status: None,
                        grpc_status: Some(code.name().to_owned()),
                        percent,
                    })
                }
                Some(ErrorType::GrpcStatus(_)) => {
                    return Err("abort.grpc_status: must be a gRPC error code, 1 to 16".to_owned());
                }
                _ => None,
            }
        }
        None => None,
    };
    Ok(FaultConfig {
        delay,
        abort,
        max_active: f.max_active_faults.map(|m| m.value),
    })
}

/// A fractional percent as a percentage; unset means 100 %, as in Envoy.
fn percent(p: Option<&FractionalPercent>) -> f64 {
    let Some(p) = p else {
        return 100.0;
    };
    let per = match DenominatorType::try_from(p.denominator) {
        Ok(DenominatorType::TenThousand) => 10_000.0,
        Ok(DenominatorType::Million) => 1_000_000.0,
        _ => 100.0,
    };
    (f64::from(p.numerator) / per * 100.0).min(100.0)
}
