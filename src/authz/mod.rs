//! Authorization: who may call a served service, and what.
//!
//! Policies arrive in two forms, the mesh file's
//! ([`AuthorizationPolicy`](crate::config::AuthorizationPolicy)) and xDS
//! RBAC HTTP filters on a server Listener (gRFC A41). Both compile into
//! the one form evaluated here: per policy, a tree of permissions (what
//! the request is) and a tree of principals (who sends it), as RBAC has
//! them, so that whatever RBAC can say is evaluated as gRPC evaluates it.

#[allow(dead_code)]
mod policies;
mod range;
// Used by the server stack and the xDS translation, which come next.
#[allow(dead_code, unused_imports)]
mod tree;

#[allow(unused_imports)]
pub(crate) use policies::{CompiledPolicies, CompiledPolicy, PolicyGroup};
pub use range::IpRange;
#[allow(unused_imports)]
pub(crate) use tree::{HeaderCondition, Permission, Principal, RequestView, StringMatch};
