//! The process's one rustls crypto provider (ring). It is installed as the process default
//! once (by `main` first thing, for the kube client; by the first caller here otherwise, as in
//! tests), and every server, client and verifier fetches that one.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The installed provider; ring's, installed now, when none is yet.
pub fn provider() -> Arc<CryptoProvider> {
    if CryptoProvider::get_default().is_none() {
        // Two threads may race here: the loser's install fails, and both fetch the winner's.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}
