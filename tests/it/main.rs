//! One integration binary (each file under tests/ would link kube, axum and rustls again).

mod cli;
mod common;
mod configmap;
mod deploy;
mod docs;
mod fake_api;
mod hostile;
mod monitoring;
mod properties;
mod review;
mod secrets;
mod server;
