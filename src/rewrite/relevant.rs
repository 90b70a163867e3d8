//! Decoding only the parts of an object that the engine reads (SPEC §5) and that the webhook
//! reports (`metadata.name`, `namespace`, `generateName`).
//!
//! Why: building a JSON tree is most of the cost of answering a review, and most of an object
//! (containers, volumes, `managedFields`, `status`, ConfigMap data) is never looked at. Fields
//! off the §5 paths are skipped by the parser (still checked as JSON) instead of allocated.
//! Arrays on a §5 path keep every element, so indexes — and therefore patch paths — are the
//! same as in the full object; a value of an unexpected type is kept whole, so the engine sees
//! exactly what it would see in the full object. `rewrite(relevant) == rewrite(full)` is a
//! tested law.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// An object decoded with only its §5 parts (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Relevant(pub Value);

impl From<Relevant> for Value {
    fn from(r: Relevant) -> Value {
        r.0
    }
}

impl<'de> Deserialize<'de> for Relevant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Shape::Object(ROOT).deserialize(d).map(Relevant)
    }
}

/// What to keep of a value.
#[derive(Clone, Copy)]
enum Shape {
    /// The whole value.
    All,
    /// Of an object, these fields (each with its own shape); of anything else, all of it.
    Object(&'static [(&'static str, Shape)]),
    /// Of an array, every element with this shape; of anything else, all of it.
    Each(&'static Shape),
}

/// `metadata`, of the object or of a template.
const METADATA: Shape = Shape::Object(&[
    ("name", Shape::All),
    ("namespace", Shape::All),
    ("generateName", Shape::All),
    ("labels", Shape::All),
    ("annotations", Shape::All),
]);

/// A pod spec: only its affinity (small, and read in full for namespace selectors).
const POD_SPEC: Shape = Shape::Object(&[("affinity", Shape::All)]);

/// `template` of workloads and PodTemplates.
const TEMPLATE: Shape = Shape::Object(&[("metadata", METADATA), ("spec", POD_SPEC)]);

/// NetworkPolicy rules: `ingress[].from[]` and `egress[].to[]` peers' namespace selectors.
const PEER: Shape = Shape::Object(&[("namespaceSelector", Shape::All)]);
const INGRESS_RULE: Shape = Shape::Object(&[("from", Shape::Each(&PEER))]);
const EGRESS_RULE: Shape = Shape::Object(&[("to", Shape::Each(&PEER))]);

/// `spec` of every kind at once: workloads (`template`), CronJobs (`jobTemplate`), Pods
/// (`affinity`), NetworkPolicies (`ingress`, `egress`). Fields of other kinds are not read.
const SPEC: Shape = Shape::Object(&[
    ("template", TEMPLATE),
    (
        "jobTemplate",
        Shape::Object(&[
            ("metadata", METADATA),
            ("spec", Shape::Object(&[("template", TEMPLATE)])),
        ]),
    ),
    ("affinity", Shape::All),
    ("ingress", Shape::Each(&INGRESS_RULE)),
    ("egress", Shape::Each(&EGRESS_RULE)),
]);

const ROOT: &[(&str, Shape)] = &[
    ("apiVersion", Shape::All),
    ("kind", Shape::All),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("template", TEMPLATE),
];

impl<'de> DeserializeSeed<'de> for Shape {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Shape::All => Value::deserialize(d),
            shape => d.deserialize_any(ShapeVisitor(shape)),
        }
    }
}

struct ShapeVisitor(Shape);

/// Scalars are kept as they are: the shape only prunes objects and arrays.
macro_rules! keep_scalar {
    ($($method:ident($t:ty)),* $(,)?) => {$(
        fn $method<E: serde::de::Error>(self, v: $t) -> Result<Value, E> {
            Ok(Value::from(v))
        }
    )*};
}

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    keep_scalar!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_str(&str),
        visit_string(String)
    );

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own Value: a non-finite number becomes null.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let element = match self.0 {
            Shape::Each(s) => *s,
            // An array where an object was expected: keep it whole, as the full tree would.
            _ => Shape::All,
        };
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(element)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let fields = match self.0 {
            Shape::Object(fields) => Some(fields),
            // An object where an array was expected: keep it whole.
            _ => None,
        };
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let shape = match fields {
                None => Some(Shape::All),
                Some(fields) => fields.iter().find(|(f, _)| *f == key).map(|(_, s)| *s),
            };
            match shape {
                Some(s) => {
                    let v = map.next_value_seed(s)?;
                    out.insert(key, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn relevant(v: &Value) -> Value {
        serde_json::from_str::<Relevant>(&v.to_string()).unwrap().0
    }

    #[test]
    fn keeps_the_section_5_paths_and_drops_the_rest() {
        let dep = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "b"}, "managedFields": [{"big": 1}]},
            "spec": {"replicas": 3, "template": {
                "metadata": {"annotations": {"x": "y"}},
                "spec": {"containers": [{"name": "c"}], "affinity": {"podAffinity": {}}}}},
            "status": {"replicas": 3}
        });
        assert_eq!(
            relevant(&dep),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"a": "b"}},
                "spec": {"template": {"metadata": {"annotations": {"x": "y"}},
                    "spec": {"affinity": {"podAffinity": {}}}}}
            })
        );
    }

    #[test]
    fn keeps_every_array_element_so_indexes_match() {
        let np = json!({"kind": "NetworkPolicy", "spec": {"ingress": [
            {"ports": [{"port": 80}]},
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}, {"namespaceSelector": {"matchLabels": {"k": "v"}}}]}
        ]}});
        assert_eq!(
            relevant(&np),
            json!({"kind": "NetworkPolicy", "spec": {"ingress": [
                {},
                {"from": [{}, {"namespaceSelector": {"matchLabels": {"k": "v"}}}]}
            ]}})
        );
    }

    #[test]
    fn unexpected_types_are_kept_whole() {
        for odd in [
            json!({"metadata": "text", "spec": [1, {"a": 2}]}),
            json!({"spec": {"ingress": {"from": 1}, "template": [{"x": 1}]}}),
            json!([1, 2, 3]),
            json!("scalar"),
            json!(null),
            json!({"spec": {"egress": [null, 1.5, "s", [1]]}}),
        ] {
            assert_eq!(relevant(&odd), odd);
        }
    }

    #[test]
    fn invalid_json_is_still_refused() {
        for bad in [
            r#"{"spec": {"containers": [1, }}"#,
            r#"{"status": tru}"#,
            r#"{"metadata": {"name": "a"}"#,
        ] {
            assert!(serde_json::from_str::<Relevant>(bad).is_err(), "{bad}");
        }
    }
}
