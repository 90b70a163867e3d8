//! rancher-remap: rewrites Rancher project IDs in objects that Portworx Stork migrates between
//! clusters, and validates the ClusterPairs that carry the mapping.
//!
//! The core is pure ([`mapping`], [`rewrite`], [`validate`]); the edges ([`cli`]) do the I/O.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod clusterpair;
pub mod live;
pub mod manifest;
pub mod mapping;
pub mod rewrite;
pub mod server;
pub mod source;
pub mod text;
pub mod validate;
