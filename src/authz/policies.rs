//! A served service's policies in the form they are evaluated in.

use super::{Permission, Principal};
use crate::config::PolicyAction;
use std::sync::Arc;

/// One policy: it matches a request when its permission and its principal
/// both do.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    pub(crate) name: Arc<str>,
    pub(crate) permission: Permission,
    pub(crate) principal: Principal,
    /// Evaluated and logged, not enforced.
    pub(crate) dry_run: bool,
    /// Every decision it takes part in is logged.
    pub(crate) audit: bool,
}

/// Policies of one action, evaluated together as one RBAC filter is: an
/// `Allow` group lets through what any of its policies matches and
/// refuses the rest; a `Deny` group refuses what any matches.
#[derive(Debug, Clone)]
pub(crate) struct PolicyGroup {
    pub(crate) action: PolicyAction,
    pub(crate) policies: Vec<CompiledPolicy>,
}

/// All of a service's policies: a request is allowed when every group
/// lets it through (RBAC filters in a chain; the mesh file's policies make
/// at most two groups, deny then allow). No groups: open.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledPolicies {
    pub(crate) groups: Vec<PolicyGroup>,
}

impl CompiledPolicies {
    /// Policies that refuse every request: one allow group without
    /// policies (one shared value, so that the server's authorizer for it
    /// is built once).
    #[cfg_attr(not(all(feature = "xds", feature = "server")), allow(dead_code))]
    pub(crate) fn deny_all() -> Arc<Self> {
        static DENY_ALL: std::sync::LazyLock<Arc<CompiledPolicies>> =
            std::sync::LazyLock::new(|| {
                Arc::new(CompiledPolicies {
                    groups: vec![PolicyGroup {
                        action: PolicyAction::Allow,
                        policies: Vec::new(),
                    }],
                })
            });
        DENY_ALL.clone()
    }
}
