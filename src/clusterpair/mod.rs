//! Stork's ClusterPair: a typed model whose credentials cannot be printed, and the identity it
//! authenticates as.

mod identity;
mod model;
mod secret;

pub use identity::{certificate_cn, current_identity, jwt_subject, Identity};
pub use model::{
    is_clusterpair, AuthInfo, Cluster, ClusterPair, ClusterPairSpec, Context, KubeConfig, Meta,
    ModelError, KIND, STORK_FIELDS,
};
pub use secret::Secret;
