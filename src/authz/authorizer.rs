//! A service's compiled policies with what enforcing them reports: the
//! log, the audit log and the decision counters.

use super::decide::Decision;
use super::index::PolicyIndex;
use super::{CompiledPolicies, Denied, RequestView};
use metrics::Counter;
use std::sync::Arc;

/// The decision counter: `sinew_authz_decisions_total{service, policy,
/// decision, dry_run}`. `dry_run="true"` counts the decisions the policies
/// would take were the dry-run ones enforced (counted only while a
/// service has dry-run policies).
pub(crate) const DECISIONS: &str = "sinew_authz_decisions_total";

/// One service's policies as the server enforces them, built once per
/// configuration version: whether any policy is dry-run or audited
/// (so that a request pays for neither when none is), and the counters,
/// registered once so that counting allocates nothing.
#[derive(Debug)]
pub(crate) struct Authorizer {
    service: Arc<str>,
    policies: Arc<CompiledPolicies>,
    index: PolicyIndex,
    dry_run: bool,
    /// By group and policy: enforced, dry-run (a policy only ever
    /// decides its group's action).
    counters: Vec<Vec<[Counter; 2]>>,
    /// Default deny and allowed-by-no-policy, enforced and dry-run.
    default: [[Counter; 2]; 2],
}

impl Authorizer {
    pub(crate) fn new(service: &str, policies: Arc<CompiledPolicies>) -> Self {
        metrics::describe_counter!(
            DECISIONS,
            "Authorization decisions by service, deciding policy, decision and dry run"
        );
        let counter = |policy: &str, allowed: bool, dry_run: bool| {
            metrics::counter!(
                DECISIONS,
                "service" => service.to_owned(),
                "policy" => policy.to_owned(),
                "decision" => if allowed { "allowed" } else { "denied" },
                "dry_run" => if dry_run { "true" } else { "false" },
            )
        };
        let counters = policies
            .groups
            .iter()
            .map(|group| {
                let allowed = group.action == crate::config::PolicyAction::Allow;
                group
                    .policies
                    .iter()
                    .map(|p| [false, true].map(|dry_run| counter(&p.name, allowed, dry_run)))
                    .collect()
            })
            .collect();
        let default = [false, true].map(|allowed| {
            let name = if allowed { "no policy" } else { "default deny" };
            [false, true].map(|dry_run| counter(name, allowed, dry_run))
        });
        Self {
            service: service.into(),
            dry_run: policies.has_dry_run(),
            index: PolicyIndex::new(&policies),
            policies,
            counters,
            default,
        }
    }

    /// The compiled policies.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn policies(&self) -> &Arc<CompiledPolicies> {
        &self.policies
    }

    /// Decides, counts and logs; `Err(Denied)` when the enforced policies
    /// refuse the request.
    #[inline]
    pub(crate) fn check(&self, request: &RequestView<'_>) -> Result<(), Denied> {
        let decision = self.policies.decide_in(request, false, &self.index);
        self.count(&decision, false);
        if decision.audit {
            self.audit(request, &decision, false);
        }
        if self.dry_run {
            self.dry_run(request, &decision);
        }
        if decision.allowed {
            return Ok(());
        }
        tracing::debug!(
            target: "sinew::authz",
            service = %self.service,
            policy = decision.policy_name(),
            "request denied"
        );
        Err(Denied::new())
    }

    #[cold]
    fn dry_run(&self, request: &RequestView<'_>, enforced: &Decision<'_>) {
        let shadow = self.policies.decide_in(request, true, &self.index);
        self.count(&shadow, true);
        let by_dry_run = shadow.policy.is_some_and(|p| p.dry_run);
        if shadow.allowed != enforced.allowed || by_dry_run {
            tracing::info!(
                target: "sinew::authz",
                service = %self.service,
                policy = shadow.policy_name(),
                enforced = if enforced.allowed { "allowed" } else { "denied" },
                "dry-run policy would {}",
                if shadow.allowed { "allow" } else { "deny" }
            );
        }
        if shadow.audit && by_dry_run {
            self.audit(request, &shadow, true);
        }
    }

    #[inline]
    fn count(&self, decision: &Decision<'_>, dry_run: bool) {
        let counter = match decision.at {
            Some((g, i)) => self
                .counters
                .get(g)
                .and_then(|group| group.get(i))
                .map(|pair| &pair[usize::from(dry_run)]),
            None => Some(&self.default[usize::from(decision.allowed)][usize::from(dry_run)]),
        };
        if let Some(counter) = counter {
            counter.increment(1);
        }
    }

    /// The audit log (gRFC A59's spirit): one line per audited decision.
    #[cold]
    fn audit(&self, request: &RequestView<'_>, decision: &Decision<'_>, dry_run: bool) {
        tracing::info!(
            target: "sinew::authz::audit",
            service = %self.service,
            caller = request.peer.unwrap_or("-"),
            source = ?request.source,
            method = %request.method,
            path = request.path,
            policy = decision.policy_name(),
            decision = if decision.allowed { "allowed" } else { "denied" },
            dry_run,
            "authorization decision"
        );
    }
}
