//! A failed call to the API server, as every edge that makes one sees it (audit, doctor,
//! map-projects, the mapping source, whoami): one classification of kube's errors by what they
//! mean to the caller, and one description. The description never quotes a response body or
//! a credential plugin's command, environment or output.

use kube::core::Status;

/// Longest message quoted from the API server.
const MESSAGE_MAX: usize = 300;

/// A call to the API server that failed, by what it means to the caller. Its text is the
/// whole cause, once.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// 401: the API server did not accept the credentials.
    #[error("{0}")]
    Unauthorized(Answer),
    /// 403: RBAC does not allow the call.
    #[error("{0}")]
    Forbidden(Answer),
    /// 404: the object, or its type, is not there (deleted, or gone since discovery).
    #[error("{0}")]
    NotFound(Answer),
    /// 405: the type does not take this verb.
    #[error("{0}")]
    NotAllowed(Answer),
    /// 409 or 422: the object changed since it was read (a resourceVersion `test` failed), or
    /// the change was refused as invalid.
    #[error("{0}")]
    Conflict(Answer),
    /// 410 with a continue token: a list outlived its snapshot (etcd compacted its revision);
    /// the token goes on with the rest (no longer one consistent snapshot).
    #[error("{answer}")]
    Expired {
        answer: Answer,
        continue_token: String,
    },
    /// Any other answer of the API server.
    #[error("{0}")]
    Other(Answer),
    /// The kubeconfig's exec plugin or auth provider failed. Its own error can quote its command
    /// line, its environment and its output, where kubeconfigs keep secrets: never shown.
    #[error("the kubeconfig's credentials could not be obtained (its exec plugin or auth provider failed; run it by hand to see why)")]
    Credentials,
    /// No answer that could be read (connection, TLS, timeout, an undecodable body): the whole
    /// cause, once each ("client error (Connect): tcp connect error: Connection refused (os
    /// error 111)"; kube's and hyper's messages repeat their sources').
    #[error("{0}")]
    Request(String),
}

/// The API server's answer: `422 Invalid: message` (the message cut short; never the body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct Answer {
    code: u16,
    reason: String,
    message: String,
}

impl KubeError {
    /// Whether trying again may succeed: 429, 5xx, or no answer (a refusal, such as a 403 or a
    /// missing namespace, will not).
    pub fn is_transient(&self) -> bool {
        match self {
            KubeError::Other(a) => a.code == 429 || a.code >= 500,
            KubeError::Request(_) | KubeError::Credentials => true,
            _ => false,
        }
    }

    /// Whether the API server answered (and so was reached, with credentials it read).
    pub fn answered(&self) -> bool {
        !matches!(self, KubeError::Credentials | KubeError::Request(_))
    }

    /// This failure of the call `what` (`get deployments.apps x in namespace y`, which is also
    /// what RBAC must allow) to the API server at `server`, as a sentence: its answer, or that
    /// `whom` could not be reached.
    pub fn of_call(&self, what: &str, server: &str, whom: &str) -> String {
        match self.answered() {
            true => format!("{what} at {server}: {self}"),
            false => format!("cannot reach {whom} at {server} ({what}): {self}"),
        }
    }
}

impl From<kube::Error> for KubeError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => classify(*status),
            kube::Error::Auth(_) => KubeError::Credentials,
            // A credential plugin that fails during a call comes back wrapped (as
            // `Error::Service`), its output in the message: found by type, never shown.
            other if causes(&other).any(|c| c.is::<kube::client::AuthError>()) => {
                KubeError::Credentials
            }
            // serde's message can quote a string of the body: its position only.
            kube::Error::SerdeError(e) => KubeError::Request(format!(
                "the API server's answer is not the JSON expected (line {}, column {})",
                e.line(),
                e.column()
            )),
            other => {
                let mut parts: Vec<String> = Vec::new();
                for text in causes(&other).map(ToString::to_string) {
                    if !parts.iter().any(|p| p.contains(&text)) {
                        parts.push(text);
                    }
                }
                KubeError::Request(parts.join(": "))
            }
        }
    }
}

/// `e` and everything it wraps, outermost first.
fn causes(e: &kube::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |&c| {
        c.source()
    })
}

fn classify(status: Status) -> KubeError {
    let continue_token = status
        .metadata
        .and_then(|m| m.continue_)
        .filter(|c| !c.is_empty());
    let answer = Answer {
        code: status.code,
        reason: status.reason,
        message: crate::text::truncate(status.message, MESSAGE_MAX),
    };
    match (answer.code, continue_token) {
        (401, _) => KubeError::Unauthorized(answer),
        (403, _) => KubeError::Forbidden(answer),
        (404, _) => KubeError::NotFound(answer),
        (405, _) => KubeError::NotAllowed(answer),
        (409 | 422, _) => KubeError::Conflict(answer),
        (410, Some(continue_token)) => KubeError::Expired {
            answer,
            continue_token,
        },
        _ => KubeError::Other(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A credential plugin's failure can carry its command line, environment and output, where
    /// kubeconfigs keep secrets (as it comes, and during a call as kube's client wraps it): the
    /// description says what failed and quotes none of it. A body that is not the JSON
    /// expected: where, never what.
    #[test]
    fn no_description_quotes_a_plugin_or_a_body() {
        let plugin = |said: &str| kube::client::AuthError::AuthExec(said.into());
        let bad = serde_json::from_str::<u32>("\"sEcReT-marker\"").unwrap_err();
        let said = "cmd: \"aws\" AWS_SECRET_ACCESS_KEY=\"sEcReT-marker\" out: token sEcReT-marker";
        let wrapped = plugin("auth exec command 'aws' failed: out: token sEcReT-marker");
        for (e, want, says) in [
            (
                kube::Error::Auth(plugin(said)),
                "Credentials",
                "credentials could not be obtained",
            ),
            (kube::Error::Service(Box::new(wrapped)), "Credentials", ""),
            (kube::Error::SerdeError(bad), "Request", "line 1"),
        ] {
            let e = KubeError::from(e);
            assert!(format!("{e:?}").starts_with(want), "{e:?}");
            assert!(!e.to_string().contains("sEcReT-marker"), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn answers_are_classified_by_code_and_described_short() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
        let status = |code: u16, token: Option<&str>| {
            let mut s = Status::failure(&"m".repeat(400), "Reason").with_code(code);
            s.metadata = token.map(|t| ListMeta {
                continue_: Some(t.into()),
                ..Default::default()
            });
            KubeError::from(kube::Error::Api(s.boxed()))
        };
        let e = status(422, None);
        assert!(matches!(e, KubeError::Conflict(_)), "{e:?}");
        assert_eq!(e.to_string(), format!("422 Reason: {}…", "m".repeat(300)));
        for (code, token, want) in [
            (401, None, "Unauthorized"),
            (403, None, "Forbidden"),
            (404, None, "NotFound"),
            (405, None, "NotAllowed"),
            (409, None, "Conflict"),
            (410, Some("next"), "Expired"),
            (410, Some(""), "Other"),
            (500, None, "Other"),
        ] {
            let e = status(code, token);
            assert!(format!("{e:?}").starts_with(want), "{code}: {e:?}");
            assert!(e.answered());
        }
    }
}
