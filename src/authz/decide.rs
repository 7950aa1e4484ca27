//! Evaluating a service's compiled policies for one request.

use super::{CompiledPolicies, CompiledPolicy, RequestView};
use crate::config::PolicyAction;

/// What the policies decide for a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decision<'a> {
    pub(crate) allowed: bool,
    /// The policy that decided: the matching deny policy, or the allow
    /// policy that let the request through. `None` for a default deny
    /// (an allow group matched nothing) or an open service.
    pub(crate) policy: Option<&'a CompiledPolicy>,
    /// Where that policy is: its group's index and its own in the group.
    pub(crate) at: Option<(usize, usize)>,
    /// The decision is to be audited: the deciding policy asks for it,
    /// or, for a default deny, any policy of the group that refused.
    pub(crate) audit: bool,
}

impl Decision<'_> {
    /// The deciding policy's name, or what decided without one.
    pub(crate) fn policy_name(&self) -> &str {
        match (self.policy, self.allowed) {
            (Some(policy), _) => &policy.name,
            (None, false) => "default deny",
            (None, true) => "no policy",
        }
    }
}

impl CompiledPolicies {
    /// The decision of the enforced policies (dry-run ones left out).
    pub(crate) fn decide<'a>(&'a self, request: &RequestView<'_>) -> Decision<'a> {
        self.evaluate(request, false)
    }

    /// The decision were the dry-run policies enforced too.
    pub(crate) fn decide_with_dry_run<'a>(&'a self, request: &RequestView<'_>) -> Decision<'a> {
        self.evaluate(request, true)
    }

    /// Whether any policy is dry-run.
    pub(crate) fn has_dry_run(&self) -> bool {
        self.policies().any(|p| p.dry_run)
    }

    /// Every policy, group by group.
    pub(crate) fn policies(&self) -> impl Iterator<Item = &CompiledPolicy> {
        self.groups.iter().flat_map(|g| g.policies.iter())
    }

    /// Every group must let the request through: a deny group refuses
    /// what any of its policies matches; an allow group lets through what
    /// any matches, and refuses the rest as soon as it has a policy in
    /// force. No allocation, no formatting.
    fn evaluate<'a>(&'a self, request: &RequestView<'_>, dry_run: bool) -> Decision<'a> {
        let mut allowed_by = None;
        for (g, group) in self.groups.iter().enumerate() {
            let in_force = group
                .policies
                .iter()
                .enumerate()
                .filter(|(_, p)| dry_run || !p.dry_run);
            match group.action {
                PolicyAction::Deny => {
                    for (i, policy) in in_force {
                        if policy.matches(request) {
                            return Decision {
                                allowed: false,
                                policy: Some(policy),
                                at: Some((g, i)),
                                audit: policy.audit,
                            };
                        }
                    }
                }
                PolicyAction::Allow => {
                    let mut any = false;
                    let mut audit = false;
                    let mut matched = None;
                    for (i, policy) in in_force {
                        any = true;
                        audit |= policy.audit;
                        if policy.matches(request) {
                            matched = Some((policy, (g, i)));
                            break;
                        }
                    }
                    match matched {
                        Some(found) => allowed_by = Some(found),
                        None if any => {
                            return Decision {
                                allowed: false,
                                policy: None,
                                at: None,
                                audit,
                            };
                        }
                        None => {}
                    }
                }
            }
        }
        Decision {
            allowed: true,
            policy: allowed_by.map(|(p, _)| p),
            at: allowed_by.map(|(_, at)| at),
            audit: allowed_by.is_some_and(|(p, _)| p.audit),
        }
    }
}

impl CompiledPolicy {
    /// Whether the policy matches: what the request is, and who sends it.
    #[inline]
    pub(crate) fn matches(&self, request: &RequestView<'_>) -> bool {
        self.permission.matches(request) && self.principal.matches(request)
    }
}
