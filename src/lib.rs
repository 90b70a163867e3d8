//! rancher-remap: rewrites Rancher project IDs in objects that Portworx Stork migrates between
//! clusters, and validates the ClusterPairs that carry the mapping.
//!
//! The core is pure and knows nothing of the edges: [`mapping`] (IDs, syntax, the lookup table),
//! [`rewrite`] (where project IDs live, which objects are rewritten, the one decision, the
//! engine), [`clusterpair`], [`validate`], [`doctor`] (its checks, on facts read elsewhere) and
//! [`pki`] (certificates, and when they are renewed) and [`rancher`] (Rancher's clusters and
//! projects, and pairing projects by name); rewrite's three settings enums derive clap's
//! `ValueEnum`, being the values of the flags that set them. The edges do the I/O: [`server`] (the
//! webhook), [`source`] (where tables come from), [`live`] (the table in force between them),
//! [`serving_cert`] (the serving pair in force, from files), [`managed_certs`] (the certificates
//! the server keeps, and its webhook configurations' caBundle), [`audit`] (existing objects) and
//! [`cli`]. What every part may use: [`crypto`] (the one TLS crypto provider), [`metrics`] (the
//! one registry each edge registers its own metrics in), [`log_sink`] (where log lines go) and
//! [`content_poll`] (following a file by its content).
#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod clusterpair;
pub mod content_poll;
pub mod crypto;
pub mod doctor;
pub mod kube_error;
pub mod live;
pub mod log_sink;
pub mod managed_certs;
pub mod manifest;
pub mod mapping;
pub mod metrics;
pub mod pki;
pub mod policy;
pub mod rancher;
pub mod rewrite;
pub mod server;
pub mod serving_cert;
pub mod source;
pub mod text;
pub mod validate;
