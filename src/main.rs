//! The `rancher-remap` binary: parse arguments, hand over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // One crypto provider for every rustls user in the process (server, kube client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    rancher_remap::cli::main()
}
