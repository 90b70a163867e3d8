//! One integration binary (each file under tests/ would link kube, axum and rustls again).

mod audit;
mod cli;
mod common;
mod configmap;
mod deploy;
mod fake_api;
mod fake_api_protocol;
mod hostile;
mod properties;
mod review;
mod secrets;
mod server;
