//! How the integration tests and the benches start the real server (included by both with
//! `#[path]`).

use std::path::Path;
use std::process::Command;

/// `BIN serve` on loopback port 0 (webhook and admin) with `dir/tls.crt` and `dir/tls.key`,
/// logging JSON, stopping at once on SIGTERM; the caller adds the mapping source and the rest.
pub fn serve_command(bin: &str, dir: &Path) -> Command {
    let mut cmd = serve_command_without_certificates(bin);
    cmd.arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"));
    cmd
}

/// [`serve_command`] without certificate files: the caller gives `--cert-secret`.
#[allow(dead_code)] // The benches use only serve_command.
pub fn serve_command_without_certificates(bin: &str) -> Command {
    let mut cmd = Command::new(bin);
    // Stops at once on SIGTERM; a test of the shutdown delay gives --shutdown-delay.
    cmd.env("RANCHER_REMAP_SHUTDOWN_DELAY", "0");
    // A test's own clients may hold idle connections when it stops the server.
    cmd.env("RANCHER_REMAP_DRAIN_TIMEOUT", "25");
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    cmd
}
