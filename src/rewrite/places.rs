//! Where project IDs live in an object, described once. This table drives every reader: the
//! walk over request bytes on the webhook's hot path and the walk over a decoded
//! `serde_json::Value` that the CLI and the tests use (both in [`mod@super::walk`]).
//!
//! The places, in the order the engine reports them (and the JSON patch lists them):
//!  0. `metadata.labels`, `metadata.annotations` of the object;
//!  1–4. pod and job template metadata: `spec.template.metadata`, `template.metadata` (PodTemplate),
//!     `spec.jobTemplate.metadata`, `spec.jobTemplate.spec.template.metadata` (CronJob);
//!  5–8. namespace selectors of pod (anti-)affinity terms in every pod spec: `spec` of a Pod,
//!     `template.spec`, `spec.template.spec`, `spec.jobTemplate.spec.template.spec`;
//!  9. namespace selectors of NetworkPolicy peers: `spec.ingress[*].from[*]`,
//!     `spec.egress[*].to[*]`.
//!
//! In a selector: `matchLabels` values under project-ID keys, and every value of an `In` or
//! `NotIn` `matchExpressions` entry on a project-ID key.

use super::outcome::Location::{self, *};
use Place::*;

/// What is read at one place of an object.
#[derive(Debug)]
pub(crate) enum Place {
    /// An object: these fields are read, every other field is skipped.
    Fields(&'static [Field]),
    /// An array: every element is read as the place given.
    Each(&'static Place),
    /// A labels or annotations map: the values of project-ID keys, found at `Location`.
    Labels(Location),
    /// The object's own annotations: as `Labels`, and Stork's migrated annotation is read.
    ObjectAnnotations(Location),
    /// One `matchExpressions` entry of a selector (`key`, `operator`, and `values`, read as
    /// the place given, which must be `Each(Value(..))`: the expression fills in its findings'
    /// key; they are dropped unless the key and operator qualify).
    Expression(&'static Place),
    /// A string value, found at `Location` (an expression's value).
    Value(Location),
    /// A string of the object's own that the decision reads.
    Capture(ObjectText),
}

/// The strings read at [`Place::Capture`]: the kind (which places count), and the
/// `generateName` (messages name an object not yet named by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjectText {
    Kind,
    GenerateName,
}

/// A field of an object place.
#[derive(Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    pub place: Place,
    /// Entering this field starts a group of places (the numbers in the module documentation):
    /// findings are reported by group, then in walk order within it.
    pub group: Option<u32>,
    /// Its rank among its siblings in the reported order (labels before annotations, ingress
    /// before egress, podAffinity before podAntiAffinity, required before preferred terms).
    pub rank: u32,
    /// Read only when the object is of this kind (a Pod's `spec.affinity`, a NetworkPolicy's
    /// rules). The kind may come after the field in the input, so this is settled at the end.
    pub when_kind: Option<&'static str>,
}

const fn field(name: &'static str, place: Place) -> Field {
    ranked(name, 0, place)
}

const fn ranked(name: &'static str, rank: u32, place: Place) -> Field {
    Field {
        name,
        place,
        group: None,
        rank,
        when_kind: None,
    }
}

const fn group(name: &'static str, group: u32, place: Place) -> Field {
    let mut f = field(name, place);
    f.group = Some(group);
    f
}

/// `f`, ranked `rank` and read only in an object of `kind`.
const fn of_kind(kind: &'static str, rank: u32, mut f: Field) -> Field {
    f.rank = rank;
    f.when_kind = Some(kind);
    f
}

/// Template metadata: its labels and annotations.
const TEMPLATE_METADATA: Place = Fields(&[
    ranked("labels", 0, Labels(TemplateLabel)),
    ranked("annotations", 1, Labels(TemplateAnnotation)),
]);

/// A selector whose values are found at `$location`: `matchLabels`, then `matchExpressions`.
/// (A macro: constant references cannot come from a function's arguments.)
macro_rules! selector {
    ($location:expr) => {
        Fields(&[
            ranked("matchLabels", 0, Labels($location)),
            ranked(
                "matchExpressions",
                1,
                Each(&Expression(&Each(&Value($location)))),
            ),
        ])
    };
}
const POD_AFFINITY_SELECTOR: Place = selector!(PodAffinitySelector);
const NETWORK_POLICY_SELECTOR: Place = selector!(NetworkPolicySelector);

/// A pod (anti-)affinity term: its namespace selector; a preferred term holds one.
const AFFINITY_TERM: Place = Fields(&[field("namespaceSelector", POD_AFFINITY_SELECTOR)]);
const PREFERRED_TERM: Place = Fields(&[field("podAffinityTerm", AFFINITY_TERM)]);

/// `podAffinity` / `podAntiAffinity`: required terms, then preferred ones.
const AFFINITY_TERMS: Place = Fields(&[
    ranked(
        "requiredDuringSchedulingIgnoredDuringExecution",
        0,
        Each(&AFFINITY_TERM),
    ),
    ranked(
        "preferredDuringSchedulingIgnoredDuringExecution",
        1,
        Each(&PREFERRED_TERM),
    ),
]);

const AFFINITY: Place = Fields(&[
    ranked("podAffinity", 0, AFFINITY_TERMS),
    ranked("podAntiAffinity", 1, AFFINITY_TERMS),
]);

/// A pod spec: only its affinity is read.
const POD_SPEC: Place = Fields(&[field("affinity", AFFINITY)]);

/// A pod template whose metadata and spec start groups `$metadata` and `$spec` (a macro, as
/// `selector!` is).
macro_rules! pod_template {
    ($metadata:expr, $spec:expr) => {
        Fields(&[
            group("metadata", $metadata, TEMPLATE_METADATA),
            group("spec", $spec, POD_SPEC),
        ])
    };
}

/// A NetworkPolicy peer: its namespace selector.
const PEER: Place = Fields(&[field("namespaceSelector", NETWORK_POLICY_SELECTOR)]);
const PEERS: Place = Each(&PEER);
/// NetworkPolicy rules: each rule's peers.
const INGRESS_RULES: Place = Each(&Fields(&[field("from", PEERS)]));
const EGRESS_RULES: Place = Each(&Fields(&[field("to", PEERS)]));

/// The group of the object's own metadata.
pub(crate) const OBJECT_METADATA_GROUP: u32 = 0;

pub(crate) static OBJECT: Place = OBJECT_PLACE;

/// The most fields any object place reads: the walk tracks each field's last visit in an
/// array this wide, so a place with more fields can never outgrow it.
pub(crate) const WIDEST: usize = widest(&OBJECT_PLACE);

const fn widest(p: &Place) -> usize {
    match p {
        Place::Fields(fields) => {
            let mut max = fields.len();
            let mut i = 0;
            while i < fields.len() {
                let inner = widest(&fields[i].place);
                if inner > max {
                    max = inner;
                }
                i += 1;
            }
            max
        }
        Place::Each(p) => widest(p),
        _ => 0,
    }
}

const OBJECT_PLACE: Place = Fields(&[
    field("kind", Capture(ObjectText::Kind)),
    group(
        "metadata",
        OBJECT_METADATA_GROUP,
        Fields(&[
            field("generateName", Capture(ObjectText::GenerateName)),
            ranked("labels", 0, Labels(Label)),
            ranked("annotations", 1, ObjectAnnotations(Annotation)),
        ]),
    ),
    field(
        "spec",
        Fields(&[
            field("template", pod_template!(1, 7)),
            field(
                "jobTemplate",
                Fields(&[
                    group("metadata", 3, TEMPLATE_METADATA),
                    field("spec", Fields(&[field("template", pod_template!(4, 8))])),
                ]),
            ),
            of_kind("Pod", 0, group("affinity", 5, AFFINITY)),
            of_kind("NetworkPolicy", 0, group("ingress", 9, INGRESS_RULES)),
            of_kind("NetworkPolicy", 1, group("egress", 9, EGRESS_RULES)),
        ]),
    ),
    field("template", pod_template!(2, 6)),
]);

/// Every location some place reports (for tests that every one is reachable).
#[cfg(test)]
pub(crate) fn locations() -> Vec<Location> {
    fn walk(p: &Place, out: &mut Vec<Location>) {
        match p {
            Place::Fields(fields) => fields.iter().for_each(|f| walk(&f.place, out)),
            Place::Each(p) => walk(p, out),
            Place::Labels(l) | Place::ObjectAnnotations(l) | Place::Value(l) => out.push(*l),
            Place::Expression(values) => walk(values, out),
            Place::Capture(_) => {}
        }
    }
    let mut out = Vec::new();
    walk(&OBJECT, &mut out);
    out.sort();
    out.dedup();
    out
}

/// How many steps of report order the deepest place needs (a group starts at one; each field,
/// array index, map position and expression value adds one).
#[cfg(test)]
pub(crate) fn order_depth() -> usize {
    fn depth(p: &Place, d: Option<usize>) -> usize {
        match p {
            Place::Fields(fields) => fields
                .iter()
                .map(|f| {
                    let d = if f.group.is_some() { Some(1) } else { d };
                    depth(&f.place, d.map(|d| d + 1))
                })
                .max()
                .unwrap_or(0),
            Place::Each(p) => depth(p, d.map(|d| d + 1)),
            Place::Labels(_) | Place::ObjectAnnotations(_) => d.map_or(0, |d| d + 1),
            Place::Expression(values) => depth(values, d.map(|d| d + 1)),
            Place::Value(_) => d.unwrap_or(0),
            Place::Capture(_) => 0,
        }
    }
    depth(&OBJECT, None)
}
