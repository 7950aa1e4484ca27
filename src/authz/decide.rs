//! Evaluating a service's compiled policies for one request.

use super::index::PolicyIndex;
use super::{CompiledPolicies, CompiledPolicy, PolicyGroup, RequestView};
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
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn decide<'a>(&'a self, request: &RequestView<'_>) -> Decision<'a> {
        self.evaluate(request, false, None)
    }

    /// The decision were the dry-run policies enforced too.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn decide_with_dry_run<'a>(&'a self, request: &RequestView<'_>) -> Decision<'a> {
        self.evaluate(request, true, None)
    }

    /// Whether any policy is dry-run.
    pub(crate) fn has_dry_run(&self) -> bool {
        self.policies().any(|p| p.dry_run)
    }

    /// Every policy, group by group.
    pub(crate) fn policies(&self) -> impl Iterator<Item = &CompiledPolicy> {
        self.groups.iter().flat_map(|g| g.policies.iter())
    }

    #[cfg(test)]
    pub(crate) fn evaluate_for_test<'a>(
        &'a self,
        request: &RequestView<'_>,
        dry_run: bool,
    ) -> Decision<'a> {
        self.evaluate(request, dry_run, None)
    }

    /// [`decide`](Self::decide) or, with `dry_run`,
    /// [`decide_with_dry_run`](Self::decide_with_dry_run), evaluating
    /// only the policies `index` says can match the caller.
    #[inline]
    pub(crate) fn decide_in<'a>(
        &'a self,
        request: &RequestView<'_>,
        dry_run: bool,
        index: &PolicyIndex,
    ) -> Decision<'a> {
        self.evaluate(request, dry_run, Some(index))
    }

    /// Every group must let the request through: a deny group refuses
    /// what any of its policies matches; an allow group lets through what
    /// any matches, and refuses the rest as soon as it has a policy in
    /// force. No allocation, no formatting.
    fn evaluate<'a>(
        &'a self,
        request: &RequestView<'_>,
        dry_run: bool,
        index: Option<&PolicyIndex>,
    ) -> Decision<'a> {
        let key = index.and_then(|index| index.key(request.peer));
        let mut allowed_by = None;
        for (g, group) in self.groups.iter().enumerate() {
            let found = match index {
                Some(index) => index.first_match(g, group, request, key, dry_run),
                None => group.first_match(request, dry_run),
            }
            .and_then(|i| group.policies.get(i).map(|p| (i, p)));
            match (group.action, found) {
                (PolicyAction::Deny, Some((i, policy))) => {
                    return Decision {
                        allowed: false,
                        policy: Some(policy),
                        at: Some((g, i)),
                        audit: policy.audit,
                    };
                }
                (PolicyAction::Deny, None) => {}
                (PolicyAction::Allow, Some((i, policy))) => allowed_by = Some((policy, (g, i))),
                (PolicyAction::Allow, None) => {
                    let (in_force, audit) = index
                        .and_then(|index| index.summary(g, dry_run))
                        .unwrap_or_else(|| group.summary(dry_run));
                    if in_force {
                        return Decision {
                            allowed: false,
                            policy: None,
                            at: None,
                            audit,
                        };
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

impl PolicyGroup {
    /// Whether the group is in force: it has a policy in force (dry-run
    /// ones counting when `dry_run`), or no policy at all, which only an
    /// RBAC filter gives (an ALLOW filter without policies allows
    /// nothing, as in gRPC and Envoy; the mesh file's compile leaves
    /// empty groups out). And whether a policy in force is audited.
    pub(crate) fn summary(&self, dry_run: bool) -> (bool, bool) {
        let mut in_force = self.policies.iter().filter(|p| dry_run || !p.dry_run);
        let any = self.policies.is_empty() || in_force.clone().next().is_some();
        (any, in_force.any(|p| p.audit))
    }
}

impl CompiledPolicy {
    /// Whether the policy matches: who sends the request, and what it is.
    /// The principal first: a policy is mostly about who calls, and its
    /// check is one comparison with the caller's ID.
    #[inline]
    pub(crate) fn matches(&self, request: &RequestView<'_>) -> bool {
        self.principal.matches(request) && self.permission.matches(request)
    }
}
