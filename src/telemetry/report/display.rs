//! The report's readable form (what `sinew call --report` prints).

use super::{AttemptReason, AttemptResult, BreakerDecision, Cause, DecisionReport, Refusal};
use std::fmt;

impl fmt::Display for DecisionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "service {} version {} routes[{}] cluster {}",
            self.service, self.version, self.route, self.cluster
        )?;
        if let Some(timeout) = self.timeout {
            write!(f, " timeout {timeout:?}")?;
        }
        if let Some(elapsed) = self.elapsed {
            write!(f, " took {elapsed:?}")?;
        }
        for a in self.attempts() {
            write!(f, "\n  attempt {} ", a.number)?;
            match a.reason {
                AttemptReason::First => f.write_str("(first)")?,
                AttemptReason::Retry { after } => write!(f, "(retry after {after})")?,
                AttemptReason::Hedge { delay } => write!(f, "(hedge after {delay:?})")?,
            }
            match a.endpoint {
                Some(endpoint) => write!(f, " to {endpoint}")?,
                None => f.write_str(" to no endpoint")?,
            }
            write!(f, " at +{:?}", a.start)?;
            if let Some(d) = a.duration {
                write!(f, " for {d:?}")?;
            }
            write!(f, ": {}", a.result)?;
            if a.queued {
                f.write_str(" (waited for max_requests)")?;
            }
            if let Some(breaker) = a.breaker {
                write!(f, " breaker {breaker}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Status(s) => write!(f, "status {}", s.as_u16()),
            Cause::Grpc(code) => write!(f, "grpc-status {code}"),
            Cause::Error(class) => f.write_str(class.as_str()),
        }
    }
}

impl fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptResult::Pending => f.write_str("pending"),
            AttemptResult::Status(s) => write!(f, "{}", s.as_u16()),
            AttemptResult::Failed(class) => f.write_str(class.as_str()),
            AttemptResult::Refused(refusal) => write!(f, "refused ({refusal})"),
            AttemptResult::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BreakerOpen => f.write_str("breaker open"),
            Refusal::Threshold { name, limit } => write!(f, "{name} {limit}"),
            Refusal::NoEndpoint => f.write_str("no endpoint"),
            Refusal::MtlsUnavailable => f.write_str("mTLS unavailable"),
        }
    }
}

impl fmt::Display for BreakerDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "breaker")]
            BreakerDecision::Admitted(state) => write!(f, "admitted ({state:?})"),
            BreakerDecision::Refused => f.write_str("refused"),
        }
    }
}
