//! Who a ClusterPair authenticates as (docs/behaviour.md): the identity Stork writes migrated objects with
//! on the cluster the ClusterPair points at. Read, never verified, and never the credential.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use super::model::{AuthInfo, KubeConfig};
use super::secret::Secret;
use crate::text::shown_name;

/// What `derive` can tell about the migration identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The Kubernetes user name the API server will see.
    User(String),
    /// It cannot be told offline; the reason says why (never quoting a credential).
    Unknown(String),
}

/// The identity of the current context's user.
pub fn current_identity(config: &KubeConfig) -> Identity {
    let Some(ctx) = config.contexts.get(&config.current_context) else {
        return Identity::Unknown(format!(
            "current-context {:?} names no context",
            shown_name(&config.current_context)
        ));
    };
    match config.users.get(&ctx.user) {
        Some(user) => user_identity(&ctx.user, user),
        None => Identity::Unknown(format!(
            "context user {:?} is not in users",
            shown_name(&ctx.user)
        )),
    }
}

fn user_identity(name: &str, user: &AuthInfo) -> Identity {
    let name = shown_name(name);
    if let Some(cert) = Secret::given(&user.client_certificate_data) {
        return match certificate_cn(cert.expose()) {
            Some(cn) => Identity::User(cn),
            None => Identity::Unknown(format!(
                "users[{name}].client-certificate-data has no readable common name"
            )),
        };
    }
    if let Some(token) = Secret::given(&user.token) {
        return match jwt_subject(token.expose()) {
            Some(sub) => Identity::User(sub),
            None => Identity::Unknown(format!(
                "users[{name}].token is not a JWT with a sub claim (an opaque token)"
            )),
        };
    }
    let how = match (user.exec, user.auth_provider, user.username.is_some()) {
        (true, _, _) => "exec",
        (_, true, _) => "auth-provider",
        (_, _, true) => "username/password",
        _ => "no credential this tool can read",
    };
    Identity::Unknown(format!("users[{name}] authenticates with {how}"))
}

/// The subject common name of a base64-encoded PEM certificate (what Kubernetes uses as the user name).
fn certificate_cn(b64_pem: &str) -> Option<String> {
    let pem_bytes = STANDARD.decode(b64_pem.trim()).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem_bytes).ok()?;
    let cert = pem.parse_x509().ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

/// The `sub` claim of a JWT, decoded without verifying the signature.
fn jwt_subject(token: &str) -> Option<String> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("sub")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    fn jwt(claims: &str) -> String {
        let (header, claims) = (br#"{"alg":"RS256"}"#, claims.as_bytes());
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    /// A kubeconfig whose current context names `user`.
    fn config_with(user: Value) -> KubeConfig {
        let config = json!({"current-context": "ctx", "users": {"u": user},
            "contexts": {"ctx": {"cluster": "k", "user": "u"}}});
        serde_json::from_value(config).unwrap()
    }

    #[test]
    fn token_subject() {
        let token = jwt(r#"{"sub":"system:serviceaccount:kube-system:stork"}"#);
        assert_eq!(
            current_identity(&config_with(json!({ "token": token }))),
            Identity::User("system:serviceaccount:kube-system:stork".into())
        );
    }

    #[test]
    fn opaque_token_is_unknown_and_not_quoted() {
        let user = json!({"token": "abcdef.0123456789abcdef"});
        match current_identity(&config_with(user)) {
            Identity::Unknown(why) => assert!(!why.contains("0123456789abcdef"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn certificate_common_name() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "stork-migrator");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let user = json!({"client-certificate-data": b64(cert.pem().as_bytes()),
            "client-key-data": b64(key.serialize_pem().as_bytes())});
        let identity = current_identity(&config_with(user));
        assert_eq!(identity, Identity::User("stork-migrator".into()));
    }

    #[test]
    fn exec_and_missing_context() {
        let exec = config_with(json!({"exec": {"command": "x"}}));
        assert!(matches!(current_identity(&exec), Identity::Unknown(w) if w.contains("exec")));
        let mut c = config_with(json!({}));
        c.current_context = "nope".into();
        assert!(matches!(current_identity(&c), Identity::Unknown(_)));
    }
}
