//! The `admission.k8s.io/v1` AdmissionReview exchange, decoded into a tree: `/validate`'s. The
//! webhook's `/mutate` reads request bytes directly (`server::mutate`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only review version the webhook speaks.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// An incoming review.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review<O = Value> {
    pub api_version: String,
    pub kind: String,
    pub request: Option<Request<O>>,
}

/// `request.kind`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GroupVersionKind {
    #[serde(deserialize_with = "null_as_default")]
    pub group: String,
    #[serde(deserialize_with = "null_as_default")]
    pub version: String,
    #[serde(deserialize_with = "null_as_default")]
    pub kind: String,
}

/// `request.userInfo` (only the name is read).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UserInfo {
    #[serde(deserialize_with = "null_as_default")]
    pub username: String,
}

/// `null` reads as absent, as the API server's Go decoder (and kube-core's types) read it.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `request`. Fields the webhook does not read (`oldObject`, `options`, `resource`, …) are
/// skipped whatever they hold; optional fields may be absent or `null`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<O = Value> {
    pub uid: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: GroupVersionKind,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: String,
    pub operation: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_info: UserInfo,
    #[serde(default = "Option::default")]
    pub object: Option<O>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl Request {
    /// `Kind namespace/name` for messages and logs.
    /// (The request's own name and namespace: on CREATE the object may not carry its namespace.)
    pub fn describe(&self) -> String {
        let generate_name = self
            .object
            .as_ref()
            .and_then(|o| o.pointer("/metadata/generateName"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        crate::rewrite::object_ref(&self.kind.kind, &self.namespace, &self.name, generate_name)
    }
}

/// Why a body is not a review the webhook can answer (answered with HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or a field with the wrong type. Only the position is reported: serde's own
    /// message may quote a value, and values may be credentials.
    #[error("request body is not a valid AdmissionReview: {category} error at line {line}, column {column}")]
    Decode {
        category: &'static str,
        line: usize,
        column: usize,
    },
    /// Another kind or version. What was sent is not echoed (a client may send anything);
    /// only the one common mistake, a v1beta1 review, is named.
    #[error("expected apiVersion {API_VERSION:?} kind \"AdmissionReview\"; got {got}")]
    WrongType { got: &'static str },
    /// No `request`.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// Nothing (or only whitespace) was sent.
    #[error("request body is empty: POST an admission.k8s.io/v1 AdmissionReview as JSON (Content-Type: application/json), as kube-apiserver does")]
    Empty,
}

impl ReviewError {
    /// A decode error by position and category only.
    pub fn from_json(e: &serde_json::Error) -> ReviewError {
        ReviewError::Decode {
            category: match e.classify() {
                serde_json::error::Category::Io => "I/O",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "type",
                serde_json::error::Category::Eof => "unexpected end of input",
            },
            line: e.line(),
            column: e.column(),
        }
    }
}

/// A body as text. JSON is UTF-8 (RFC 8259): checked once over the whole body, because serde
/// skips the fields a decoder does not read (`managedFields`, ...) without checking their
/// strings, and a body carrying bytes that are not text there is not JSON. (The string reader
/// then need not check again.)
pub fn text(body: &[u8]) -> Result<&str, ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        ReviewError::Decode {
            category: "not UTF-8",
            line,
            column,
        }
    })
}

/// Decodes and checks a review body, decoding `request.object` as `O`.
pub fn decode<O: DeserializeOwned>(body: &[u8]) -> Result<Request<O>, ReviewError> {
    let review: Review<O> =
        serde_json::from_str(text(body)?).map_err(|e| ReviewError::from_json(&e))?;
    check_type(Some(&review.api_version), Some(&review.kind))?;
    review.request.ok_or(ReviewError::NoRequest)
}

/// Refuses a review of another kind or version (what was sent is not echoed; only the one
/// common mistake, a v1beta1 review, is named).
pub fn check_type(api_version: Option<&str>, kind: Option<&str>) -> Result<(), ReviewError> {
    if api_version == Some(API_VERSION) && kind == Some("AdmissionReview") {
        return Ok(());
    }
    let got = if kind != Some("AdmissionReview") {
        "another kind"
    } else if api_version == Some("admission.k8s.io/v1beta1") {
        "admission.k8s.io/v1beta1 (set admissionReviewVersions: [\"v1\"] in the webhook configuration)"
    } else {
        "another apiVersion"
    };
    Err(ReviewError::WrongType { got })
}

/// `response.status` of a denial.
#[derive(Debug, Serialize, PartialEq)]
pub struct Status {
    pub code: u16,
    pub message: String,
    pub reason: &'static str,
}

/// `/validate`'s `response` (it never patches; `/mutate` writes its own answer, with the
/// patch, in `server::mutate`).
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Response {
    /// Allows the request unchanged.
    pub fn allow(uid: &str) -> Self {
        Response {
            uid: uid.to_string(),
            allowed: true,
            ..Default::default()
        }
    }

    /// Refuses the request with a message a person can act on.
    pub fn deny(uid: &str, message: String) -> Self {
        Response {
            uid: uid.to_string(),
            allowed: false,
            status: Some(Status {
                code: 403,
                message,
                reason: "Forbidden",
            }),
            ..Default::default()
        }
    }

    /// Wraps the response in a review.
    pub fn into_review(self) -> Value {
        serde_json::json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": self})
    }
}

/// Kubernetes truncates long warnings; keep each one readable and bounded.
pub fn bounded_warnings(warnings: impl IntoIterator<Item = String>) -> Vec<String> {
    const MAX: usize = 50;
    let mut out: Vec<String> = warnings.into_iter().collect();
    if out.len() > MAX {
        let extra = out.len() - (MAX - 1);
        out.truncate(MAX - 1);
        out.push(format!("rancher-remap: {extra} more warnings not shown"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_fixture() {
        let body = include_str!("../../tests/data/create-deployment-migrated.json");
        let r = decode::<Value>(body.as_bytes()).unwrap();
        assert_eq!(r.uid, "7f4b9a1c-0f0e-4a55-9a53-2f1d1f3c0a02");
        assert_eq!(r.describe(), "Deployment shop/web");
        assert_eq!(
            r.user_info.username,
            "system:serviceaccount:kube-system:stork-migrator"
        );
        assert_eq!(r.operation, "CREATE");
    }

    #[test]
    fn delete_has_null_object() {
        let body = include_str!("../../tests/data/delete-namespace.json");
        let r = decode::<Value>(body.as_bytes()).unwrap();
        assert!(r.object.is_none());
    }

    #[test]
    fn null_optional_fields_read_as_absent() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":null,"version":"v1","kind":"Namespace"},"resource":null,"subResource":null,"name":null,"namespace":null,"operation":"CREATE","userInfo":{"username":null,"groups":null},"object":null,"oldObject":null,"options":null,"dryRun":null}}"#;
        let r = decode::<Value>(body).unwrap();
        assert_eq!((r.name.as_str(), r.namespace.as_str()), ("", ""));
        assert_eq!(r.user_info.username, "");
        assert!(r.object.is_none() && r.dry_run.is_none());
        assert_eq!(r.kind.kind, "Namespace");
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Namespace"},"operation":"CREATE","userInfo":null}}"#;
        assert_eq!(decode::<Value>(body).unwrap().user_info.username, "");
    }

    #[test]
    fn errors_never_quote_values() {
        let e = decode::<Value>(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":"s3cr3t-token","operation":"CREATE"}}"#).unwrap_err();
        assert!(matches!(
            e,
            ReviewError::Decode {
                category: "type",
                ..
            }
        ));
        assert!(!e.to_string().contains("s3cr3t"));
        assert!(matches!(
            decode::<Value>(b"not json"),
            Err(ReviewError::Decode {
                category: "syntax",
                ..
            })
        ));
        assert!(matches!(
            decode::<Value>(
                br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#
            ),
            Err(ReviewError::WrongType { .. })
        ));
        assert!(matches!(
            decode::<Value>(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(ReviewError::NoRequest)
        ));
        for empty in [&b""[..], b" \r\n"] {
            assert!(matches!(decode::<Value>(empty), Err(ReviewError::Empty)));
        }
    }
}
