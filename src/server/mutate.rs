//! `/mutate` on the request bytes: one decode pass that borrows, one answer written once.
//!
//! The review is read once from the body: the envelope fields the webhook needs are borrowed
//! from it, the object is walked for its project IDs ([`crate::rewrite::walk`]), and everything
//! else — containers, `managedFields`, `last-applied-configuration` — is checked as JSON and
//! skipped, never copied. The answer (the AdmissionReview, the JSON patch inside it as base64,
//! the warnings and the audit annotation) is written straight into one buffer. This is the
//! webhook's one decision: property tests hold its answers, applied, to a reference rewrite
//! that shares no code with it, and its reading of odd JSON to serde's.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::outcome::RequestOutcome;
use super::review::{bounded_warnings, check_type, ReviewError};
use crate::mapping::objects::Mappings;
use crate::mapping::Table;
use crate::rewrite::{
    admit, is_namespace, namespace_claim, object_ref, push_display_pointer, unmapped_denial,
    unmapped_warning, verdict, walk_bounded, CowStr, Found, Location, Mode, MutateSettings,
    NamespaceClaim, Options, UnmappedAction, Verdict, Walked, Writer,
};

/// Most project-ID values one object may hold (in labels, annotations and selectors together);
/// a real object holds a handful. Bounds what a hostile object costs (each value is a finding,
/// and duplicate keys are checked within each map); more is refused as a bad request.
pub const MAX_PROJECT_ID_VALUES: usize = 1000;

/// A review as `/mutate` reads it: borrowed from the body.
#[derive(Debug)]
pub struct MutateRequest<'a, 't> {
    pub uid: Cow<'a, str>,
    /// `request.kind.group` (empty: the core group).
    pub group: Cow<'a, str>,
    /// `request.kind.kind`.
    pub kind: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub namespace: Cow<'a, str>,
    pub operation: Cow<'a, str>,
    pub username: Cow<'a, str>,
    pub dry_run: bool,
    /// What the walk found in `request.object` (`None`: no object, as on DELETE).
    pub object: Option<Walked<'a, 't>>,
}

/// Decodes a review body, walking its object with `table`.
pub fn decode<'a, 't>(
    body: &'a [u8],
    table: &'t Table,
) -> Result<MutateRequest<'a, 't>, ReviewError> {
    let mut d = serde_json::Deserializer::from_str(super::review::text(body)?);
    let review = ReviewSeed { table }
        .deserialize(&mut d)
        .and_then(|r| d.end().map(|()| r))
        .map_err(|e| ReviewError::from_json(&e))?;
    check_type(review.api_version.as_deref(), review.kind.as_deref())?;
    review.request.ok_or(ReviewError::NoRequest)
}

struct Review<'a, 't> {
    api_version: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
    request: Option<MutateRequest<'a, 't>>,
}

struct ReviewSeed<'t> {
    table: &'t Table,
}

impl<'de, 't> DeserializeSeed<'de> for ReviewSeed<'t> {
    type Value = Review<'de, 't>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 't> Visitor<'de> for ReviewSeed<'t> {
    type Value = Review<'de, 't>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut api_version, mut kind, mut request) = (None, None, None);
        let (mut saw_api_version, mut saw_kind, mut saw_request) = (false, false, false);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "apiVersion" => {
                    once(&mut saw_api_version, "apiVersion")?;
                    api_version = Some(map.next_value_seed(CowStr)?);
                }
                "kind" => {
                    once(&mut saw_kind, "kind")?;
                    kind = Some(map.next_value_seed(CowStr)?);
                }
                "request" => {
                    once(&mut saw_request, "request")?;
                    request = map.next_value_seed(Optional(RequestSeed { table: self.table }))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !saw_api_version {
            return Err(A::Error::missing_field("apiVersion"));
        }
        if !saw_kind {
            return Err(A::Error::missing_field("kind"));
        }
        Ok(Review {
            api_version,
            kind,
            request,
        })
    }
}

/// Refuses a second occurrence of an envelope field.
fn once<E: serde::de::Error>(seen: &mut bool, field: &'static str) -> Result<(), E> {
    if std::mem::replace(seen, true) {
        return Err(E::duplicate_field(field));
    }
    Ok(())
}

/// `null` as `None`, anything else read with the seed.
struct Optional<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Optional<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Optional<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value or null")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// `request`.
struct RequestSeed<'t> {
    table: &'t Table,
}

impl<'de, 't> DeserializeSeed<'de> for RequestSeed<'t> {
    type Value = MutateRequest<'de, 't>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(RequestVisitor { table: self.table })
    }
}

struct RequestVisitor<'t> {
    table: &'t Table,
}

/// `request.kind` (group and kind) and `request.userInfo` (username). `null` reads as absent.
#[derive(Default, Deserialize)]
#[serde(default, bound(deserialize = "'de: 'a"))]
struct KindField<'a> {
    #[serde(deserialize_with = "optional_str")]
    group: Option<Cow<'a, str>>,
    #[serde(deserialize_with = "optional_str")]
    kind: Option<Cow<'a, str>>,
}

#[derive(Default, Deserialize)]
#[serde(default, bound(deserialize = "'de: 'a"))]
struct UserInfo<'a> {
    #[serde(deserialize_with = "optional_str")]
    username: Option<Cow<'a, str>>,
}

impl<'de, 't> Visitor<'de> for RequestVisitor<'t> {
    type Value = MutateRequest<'de, 't>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an admission request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut uid = None;
        let mut operation = None;
        let mut kind = KindField::default();
        let (mut name, mut namespace, mut username) = (None, None, None);
        let mut dry_run = None;
        let mut object = None;
        // Each field at most once, as serde's derived structs (and `/validate`'s decoder) insist.
        const FIELDS: [&str; 8] = [
            "uid",
            "operation",
            "kind",
            "name",
            "namespace",
            "userInfo",
            "dryRun",
            "object",
        ];
        let mut seen = [false; FIELDS.len()];
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if let Some(i) = FIELDS.iter().position(|f| *f == key.0) {
                once(&mut seen[i], FIELDS[i])?;
            }
            match &*key.0 {
                "uid" => uid = Some(map.next_value_seed(CowStr)?),
                "operation" => operation = Some(map.next_value_seed(CowStr)?),
                "kind" => {
                    kind = map
                        .next_value::<Option<KindField<'de>>>()?
                        .unwrap_or_default()
                }
                "name" => name = map.next_value_seed(Optional(CowStr))?,
                "namespace" => namespace = map.next_value_seed(Optional(CowStr))?,
                "userInfo" => {
                    username = map
                        .next_value::<Option<UserInfo<'de>>>()?
                        .unwrap_or_default()
                        .username
                }
                "dryRun" => dry_run = map.next_value::<Option<bool>>()?,
                "object" => {
                    object = map.next_value_seed(Optional(ObjectSeed { table: self.table }))?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(MutateRequest {
            uid: uid.ok_or_else(|| A::Error::missing_field("uid"))?,
            operation: operation.ok_or_else(|| A::Error::missing_field("operation"))?,
            group: kind.group.unwrap_or_default(),
            kind: kind.kind.unwrap_or_default(),
            name: name.unwrap_or_default(),
            namespace: namespace.unwrap_or_default(),
            username: username.unwrap_or_default(),
            dry_run: dry_run.unwrap_or(false),
            object,
        })
    }
}

/// `request.object`, walked.
struct ObjectSeed<'t> {
    table: &'t Table,
}

impl<'de, 't> DeserializeSeed<'de> for ObjectSeed<'t> {
    type Value = Walked<'de, 't>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        walk_bounded(d, self.table, MAX_PROJECT_ID_VALUES)
    }
}

/// A map key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        CowStr.deserialize(d).map(Key)
    }
}

/// A string or `null`; anything else is a type error.
fn optional_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Optional(CowStr).deserialize(d)
}

/// The warning that says what `--mode warn` did not apply (`audit`: the audit annotation's text).
pub fn not_applied_warning(object: &str, audit: &str) -> String {
    format!("{object}: --mode warn: the patch was not applied; it would have rewritten: {audit}")
}

/// The answer to one `/mutate` request, and what to count and log about it.
#[derive(Debug)]
pub struct Answer {
    /// The AdmissionReview, ready to send.
    pub body: Vec<u8>,
    pub verdict: RequestOutcome,
    /// Values rewritten and unmapped, by [`Location::index`].
    pub rewrites: [u32; Location::ALL.len()],
    pub unmapped: [u32; Location::ALL.len()],
    /// Whether the answer carries warnings.
    pub warned: bool,
}

/// Decides and writes the answer: which requests
/// are rewritten is the core's rule ([`admit`]); what the findings come to is [`judge`]d; the
/// answer is written once ([`write_answer`]).
pub fn answer(
    req: &mut MutateRequest<'_, '_>,
    mappings: &Mappings,
    settings: &MutateSettings,
) -> Answer {
    let mut a = Answer::new();
    match decide(req, mappings, settings, &mut a) {
        Some(decided) => write_answer(&mut a, &decided),
        None => a.body = allowed(&req.uid),
    }
    a
}

impl Answer {
    fn new() -> Answer {
        Answer {
            body: Vec::new(),
            verdict: RequestOutcome::Allowed,
            rewrites: [0; Location::ALL.len()],
            unmapped: [0; Location::ALL.len()],
            warned: false,
        }
    }
}

/// An answer decided, not yet written: an object in scope that holds project IDs.
#[doc(hidden)]
pub struct Decided<'r, 'a, 't> {
    uid: &'r str,
    walked: &'r Walked<'a, 't>,
    options: Options,
    judged: Judged,
}

/// The decision; `None` when the answer is a plain allow (not a write, not in scope, or no
/// project ID in the object). Counts the findings into `a`.
fn decide<'r, 'a, 't>(
    req: &'r mut MutateRequest<'a, 't>,
    mappings: &Mappings,
    settings: &MutateSettings,
    a: &mut Answer,
) -> Option<Decided<'r, 'a, 't>> {
    let is_write = matches!(&*req.operation, "CREATE" | "UPDATE");
    let walked = req.object.as_mut().filter(|_| is_write)?;
    // Only a Namespace's findings are read before the decision (one comparison otherwise).
    let claim = if is_namespace(&req.group, &req.kind) {
        let this = settings.cluster_id.as_deref();
        namespace_claim(walked.settle(), &mappings.table, this)
    } else {
        NamespaceClaim::Unknown
    };
    let writer = Writer {
        username: &req.username,
        migrated_annotation: walked.migrated_annotation,
        claim,
    };
    let migrated = admit(&writer, mappings, settings)?;
    if walked.settle().is_empty() {
        // Nothing in the object holds a project ID: nothing is built.
        return None;
    }
    let options = Options {
        unmapped: settings.unmapped,
        migrated,
    };
    let walked: &'r Walked<'a, 't> = walked;
    // Only messages name the object (rare: only unmapped values have messages).
    let object = || {
        object_ref(
            &req.kind,
            &req.namespace,
            &req.name,
            walked.generate_name.as_deref().unwrap_or_default(),
        )
    };
    let judged = judge(walked, &options, settings.mode, &object, a);
    Some(Decided {
        uid: &req.uid,
        walked,
        options,
        judged,
    })
}

/// What the findings of an object in scope come to.
struct Judged {
    /// Bounded, ready to send.
    warnings: Vec<String>,
    /// Under `--unmapped deny`, one message per unmapped value.
    denials: Vec<String>,
    /// Replaced and removed values.
    patch_ops: usize,
    /// `--mode warn` with a patch due: the audit annotation says it, no patch is sent.
    warn_only: bool,
    /// The audit annotation, when a patch is due and nothing is denied.
    audit: Option<String>,
}

/// Counts the findings into `a`, and says what they come to: warnings and denials for unmapped
/// values (rare: messages allocate), the patch's size, the audit annotation.
fn judge(
    walked: &Walked<'_, '_>,
    options: &Options,
    mode: Mode,
    object: &dyn Fn() -> String,
    a: &mut Answer,
) -> Judged {
    let findings = walked.settled();
    let (mut warnings, mut denials, mut patch_ops) = (Vec::new(), Vec::new(), 0usize);
    for f in findings {
        match verdict(f, options) {
            Verdict::Keep => {}
            Verdict::Replace(_) => {
                a.rewrites[f.location.index()] += 1;
                patch_ops += 1;
            }
            Verdict::Unmapped(action) => {
                a.unmapped[f.location.index()] += 1;
                let pointer = walked.pointer(f);
                let object = object();
                warnings.push(unmapped_warning(
                    &object, &f.value, pointer, action, f.location,
                ));
                match action {
                    UnmappedAction::Denied => {
                        denials.push(unmapped_denial(&object, &f.value, &f.key, pointer))
                    }
                    UnmappedAction::Removed => patch_ops += 1,
                    UnmappedAction::Kept => {}
                }
            }
        }
    }
    let warn_only = mode == Mode::Warn && patch_ops > 0 && denials.is_empty();
    let audit =
        (patch_ops > 0 && denials.is_empty()).then(|| audit_text(walked, findings, options));
    if let (true, Some(audit)) = (warn_only, &audit) {
        warnings.push(not_applied_warning(&object(), audit));
    }
    Judged {
        warnings: bounded_warnings(warnings),
        denials,
        patch_ops,
        warn_only,
        audit,
    }
}

/// Writes the answer decided, into one buffer sized once.
///
/// Why by hand and not as kube-core's `AdmissionResponse` serialized in an `AdmissionReview`
/// (issue 22 asked for the ecosystem's type): for the bench review (10 rewrites), this takes
/// 2.8 µs and kube-core 13.2–16.0 µs, 10–13 µs more per answer (`cargo bench --bench answer`,
/// BENCHMARKS.md). kube-core also sends the patch as a JSON array of numbers, one per byte,
/// instead of base64: 7,080 bytes on the wire instead of 3,520.
fn write_answer(a: &mut Answer, d: &Decided<'_, '_, '_>) {
    let (uid, j) = (d.uid, &d.judged);
    a.warned = !j.warnings.is_empty();
    let warnings = &j.warnings;
    if !j.denials.is_empty() {
        a.verdict = RequestOutcome::Denied;
        let message = j.denials.join("; ");
        let mut out = head(uid, 96 + message.len() + warnings_len(warnings));
        out.extend_from_slice(br#","allowed":false,"status":{"code":403,"message":"#);
        write_str(&mut out, &message);
        out.extend_from_slice(br#","reason":"Forbidden"}"#);
        write_warnings(&mut out, warnings);
        out.extend_from_slice(b"}}");
        a.body = out;
        return;
    }
    if j.patch_ops == 0 {
        let mut out = head(uid, 32 + warnings_len(warnings));
        out.extend_from_slice(br#","allowed":true"#);
        write_warnings(&mut out, warnings);
        out.extend_from_slice(b"}}");
        a.body = out;
        return;
    }
    let audit = j.audit.as_deref().unwrap_or_default();
    if j.warn_only {
        a.verdict = RequestOutcome::WouldPatch;
        let mut out = head(uid, 64 + 2 * audit.len() + warnings_len(warnings));
        out.extend_from_slice(br#","allowed":true"#);
        write_warnings(&mut out, warnings);
        out.extend_from_slice(br#","auditAnnotations":{"project-ids":"#);
        write_str(&mut out, audit);
        out.extend_from_slice(b"}}}");
        a.body = out;
        return;
    }
    a.verdict = RequestOutcome::Patched;
    a.body = patched(uid, d.walked, &d.options, warnings, audit);
}

/// An allow with the patch: the patch and the audit annotation first, each sized once, then the
/// answer around them, the patch's base64 written straight into it.
fn patched(
    uid: &str,
    walked: &Walked<'_, '_>,
    options: &Options,
    warnings: &[String],
    audit: &str,
) -> Vec<u8> {
    let patch = patch_json(walked, walked.settled(), options);
    let encoded = base64::encoded_len(patch.len(), true).unwrap_or(0);
    let mut out = head(
        uid,
        128 + encoded + 2 * audit.len() + warnings_len(warnings),
    );
    out.extend_from_slice(br#","allowed":true,"patchType":"JSONPatch","patch":""#);
    let start = out.len();
    out.resize(start + encoded, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(&patch, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
    write_warnings(&mut out, warnings);
    out.extend_from_slice(br#","auditAnnotations":{"project-ids":"#);
    write_str(&mut out, audit);
    out.extend_from_slice(b"}}}");
    out
}

/// The start of an answer, `{"apiVersion":…,"response":{"uid":…`, in a buffer with room for
/// `more` bytes after it.
fn head(uid: &str, more: usize) -> Vec<u8> {
    const HEAD: &[u8] =
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;
    let mut out = Vec::with_capacity(HEAD.len() + uid.len() + 8 + more);
    out.extend_from_slice(HEAD);
    write_str(&mut out, uid);
    out
}

/// Room the warnings take (escapes aside).
fn warnings_len(warnings: &[String]) -> usize {
    warnings.iter().map(|w| w.len() + 3).sum::<usize>() + 16
}

/// The JSON patch: `replace` for each rewritten value, `remove` for each dropped one, in the
/// findings' order.
fn patch_json(walked: &Walked<'_, '_>, findings: &[Found<'_, '_>], options: &Options) -> Vec<u8> {
    let room: usize = findings
        .iter()
        .map(|f| walked.pointer(f).len() + f.value.len() + 48)
        .sum();
    let mut patch = Vec::with_capacity(2 + room);
    patch.push(b'[');
    let mut first = true;
    for f in findings {
        let replacement = match verdict(f, options) {
            Verdict::Replace(to) => Some(to),
            Verdict::Unmapped(UnmappedAction::Removed) => None,
            Verdict::Keep | Verdict::Unmapped(_) => continue,
        };
        if !first {
            patch.push(b',');
        }
        first = false;
        match replacement {
            Some(to) => {
                patch.extend_from_slice(br#"{"op":"replace","path":"#);
                write_str(&mut patch, walked.pointer(f));
                patch.extend_from_slice(br#","value":"#);
                write_str(&mut patch, to);
                patch.push(b'}');
            }
            None => {
                patch.extend_from_slice(br#"{"op":"remove","path":"#);
                write_str(&mut patch, walked.pointer(f));
                patch.push(b'}');
            }
        }
    }
    patch.push(b']');
    patch
}

/// The audit annotation: every rewrite, then every removed value.
fn audit_text(walked: &Walked<'_, '_>, findings: &[Found<'_, '_>], options: &Options) -> String {
    const MAX: usize = 2000;
    let room: usize = findings
        .iter()
        .map(|f| walked.pointer(f).len() + 2 * f.value.len() + 16)
        .sum();
    let mut text = String::with_capacity(room.min(MAX + 8));
    let mut first = true;
    let mut sep = |text: &mut String| {
        if !first {
            text.push_str("; ");
        }
        first = false;
    };
    for f in findings {
        if let Verdict::Replace(to) = verdict(f, options) {
            sep(&mut text);
            push_display_pointer(walked.pointer(f), &mut text);
            text.push(' ');
            text.push_str(&f.value);
            text.push_str("->");
            text.push_str(to);
        }
    }
    for f in findings {
        if verdict(f, options) == Verdict::Unmapped(UnmappedAction::Removed) {
            sep(&mut text);
            push_display_pointer(walked.pointer(f), &mut text);
            text.push(' ');
            text.push_str(&f.value);
            text.push_str(" removed");
        }
    }
    crate::text::truncate(text, MAX)
}

/// `,"warnings":[...]` when there are any.
fn write_warnings(out: &mut Vec<u8>, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    out.extend_from_slice(br#","warnings":["#);
    for (i, w) in warnings.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, w);
    }
    out.push(b']');
}

/// A JSON string, escaped as serde_json escapes it.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// An allow without a patch.
pub fn allowed(uid: &str) -> Vec<u8> {
    let mut out = head(uid, 20);
    out.extend_from_slice(br#","allowed":true}}"#);
    out
}

/// A decided answer, its hand-written encoding ([`write_answer`]) and its parts, for
/// `benches/answer.rs`, which measures that encoder against kube-core's `AdmissionResponse`.
#[doc(hidden)]
pub mod encoders {
    use super::*;

    /// Decides `req`'s answer (`None`: a plain allow), to encode it repeatedly.
    pub fn decide<'r, 'a, 't>(
        req: &'r mut MutateRequest<'a, 't>,
        mappings: &Mappings,
        settings: &MutateSettings,
    ) -> Option<Decided<'r, 'a, 't>> {
        super::decide(req, mappings, settings, &mut Answer::new())
    }

    /// The webhook's answer, written by hand.
    pub fn hand_written(d: &Decided<'_, '_, '_>) -> Vec<u8> {
        let mut a = Answer::new();
        write_answer(&mut a, d);
        a.body
    }

    /// What a decided answer says, for another encoder to write it.
    pub struct Parts<'d> {
        pub uid: &'d str,
        pub warnings: &'d [String],
        pub denials: &'d [String],
        /// The audit annotation, when a patch is due.
        pub audit: Option<&'d str>,
        /// `--mode warn`: the patch is not sent.
        pub warn_only: bool,
        pub patch: json_patch::Patch,
    }

    /// The parts of `d`.
    pub fn parts<'d>(d: &'d Decided<'_, '_, '_>) -> Parts<'d> {
        let j = &d.judged;
        Parts {
            uid: d.uid,
            warnings: &j.warnings,
            denials: &j.denials,
            audit: j.audit.as_deref().filter(|_| j.patch_ops > 0),
            warn_only: j.warn_only,
            patch: patch_ops(d),
        }
    }

    /// The patch of [`patch_json`], as json-patch operations.
    fn patch_ops(d: &Decided<'_, '_, '_>) -> json_patch::Patch {
        use json_patch::{PatchOperation, RemoveOperation, ReplaceOperation};
        let walked = d.walked;
        let mut ops = Vec::new();
        for f in walked.settled() {
            let path = jsonptr::PointerBuf::parse(walked.pointer(f)).unwrap_or_default();
            match verdict(f, &d.options) {
                Verdict::Replace(to) => ops.push(PatchOperation::Replace(ReplaceOperation {
                    path,
                    value: serde_json::Value::from(to),
                })),
                Verdict::Unmapped(UnmappedAction::Removed) => {
                    ops.push(PatchOperation::Remove(RemoveOperation { path }))
                }
                Verdict::Keep | Verdict::Unmapped(_) => {}
            }
        }
        json_patch::Patch(ops)
    }
}
