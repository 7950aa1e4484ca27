//! Authorization: who may call a served service, and what.
//!
//! Policies arrive in two forms, the mesh file's
//! ([`AuthorizationPolicy`](crate::config::AuthorizationPolicy)) and xDS
//! RBAC HTTP filters on a server Listener (gRFC A41). Both compile into
//! the one form evaluated here: per policy, a tree of permissions (what
//! the request is) and a tree of principals (who sends it), as RBAC has
//! them, so that whatever RBAC can say is evaluated as gRPC evaluates it.
//!
//! The server stack of [`Mesh::server`](crate::mesh::Mesh::server)
//! enforces the served service's policies; [`AuthorizeLayer`] does the
//! same in front of any tower service. A refused request fails with
//! [`Denied`], answered 403 (gRPC `PERMISSION_DENIED`) by
//! [`ErrorResponseLayer`](crate::respond::ErrorResponseLayer), and never
//! reaches the application. Decisions are counted in
//! `sinew_authz_decisions_total{service, policy, decision, dry_run}`;
//! denials are logged at debug (target `sinew::authz`), dry-run policies'
//! differing decisions at info (same target), and audited policies'
//! decisions at info (target `sinew::authz::audit`).

mod authorizer;
mod decide;
mod denied;
mod index;
mod layer;
mod policies;
mod range;
mod request;
// Some variants are built only by the xDS RBAC translation.
#[allow(dead_code)]
mod tree;

pub(crate) use authorizer::Authorizer;
pub use denied::Denied;
pub use layer::{Authorize, AuthorizeLayer, ResponseFuture};
pub(crate) use policies::{CompiledPolicies, CompiledPolicy, PolicyGroup};
pub use range::IpRange;
#[cfg_attr(not(feature = "server"), allow(unused_imports))]
pub(crate) use request::ConnectionAddresses;
pub(crate) use tree::{HeaderCondition, Permission, Principal, RequestView, StringMatch};

#[cfg(test)]
mod tests;
