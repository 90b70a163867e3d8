//! Stork's ClusterPair: a typed model whose credentials cannot be printed, and the identity it
//! authenticates as.

mod identity;
mod model;
mod secret;

pub use identity::{current_identity, Identity};
pub use model::{is_clusterpair, AuthInfo, Cluster, ClusterPair, KubeConfig, STORK_FIELDS};
pub use secret::Secret;
