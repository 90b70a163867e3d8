//! The `rancher-remap` binary: parse arguments, hand over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // One crypto provider for every rustls user in the process (server, kube client).
    rancher_remap::crypto::provider();
    // A panic's message may quote input (a ClusterPair's credentials, say): log where it
    // happened, never what it says. Handlers turn panics into 500s; see server::routes.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map_or(String::new(), |l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(at, "panic (message withheld: it may quote input)");
        eprintln!("rancher-remap: internal error at {at}");
    }));
    rancher_remap::cli::main()
}
