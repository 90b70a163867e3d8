//! The cluster suite: the real binary, the chart and the kustomize install against a real
//! kube-apiserver (see `plane`). Each test holds the suite's turn while it runs: the webhooks it
//! installs see every namespace.
#![allow(dead_code)]

mod install;
mod objects;
mod plane;

mod audit;
mod certificates;
mod doctor;
mod mappings;
mod policy;
mod projects;
mod replicas;
pub mod rewrites;
mod server_rbac;
