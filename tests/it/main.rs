//! One integration binary (each file under tests/ would link kube, axum and rustls again).

mod answers;
mod audit;
mod certificates;
mod chart;
mod cli;
mod common;
mod configmap;
mod deploy;
mod dist;
mod docs;
mod doctor;
mod edges;
mod fake_api;
mod fake_api_protocol;
mod hostile;
mod leaks;
mod messages;
mod monitoring;
mod namespaces;
mod properties;
mod rbac;
mod review;
mod secrets;
mod server;
