//! The rewrite as CEL the API server runs: one JSONPatch expression per group of places,
//! generated from `rewrite::places` (docs/behaviour.md, "Where values are rewritten",
//! written once: the engine walks the same table), and the lookup of one value in the policy's
//! `table` variable (the [`TableParts`](crate::mapping::TableParts) as keys, see [`super::table`]).
//!
//! What the generated CEL does, place by place, as the engine does it:
//! - a labels or annotations map: every key whose prefix is `cattle.io` or ends in `.cattle.io`
//!   and whose name is `projectid` in any case; its value looked up; `replace` when the lookup
//!   gives another value, `remove` when it gives none and unmapped values are dropped (never in
//!   a selector);
//! - a selector expression: when its key is a project-ID key and its operator `In` or `NotIn`,
//!   each value looked up and replaced (an unmapped one stays);
//! - an array: `transformList` over its elements, the element's patches `flatten`ed;
//! - a field read only for one kind (a Pod's `spec.affinity`, a NetworkPolicy's rules): guarded
//!   by `object.kind`.
//!
//! Optional fields are read with CEL's optional chaining (`object.?spec.?template`), so an
//! object without a place yields no patch rather than an error. Patch values are strings only:
//! a typed object built in a patch value (`Object.spec...{}`) fails inside the v1.36 API server.

use std::collections::BTreeMap;

use super::TABLE_VARIABLE;
use crate::rewrite::places::{Place, OBJECT};
use crate::rewrite::Location;

/// The table's keys: projects and clusters apart, as the engine composes a `C:P` lookup.
pub const SOURCE_PROJECT: &str = "p.";
pub const SOURCE_CLUSTER: &str = "c.";
pub const DESTINATION_PROJECT: &str = "dp.";
pub const DESTINATION_CLUSTER: &str = "dc.";
/// How the CEL is made: what unmapped values become, and where the table's literals part.
#[derive(Clone, Copy, Debug)]
pub struct Gen<'a> {
    /// An unmapped label or annotation is removed (selectors never).
    pub drop_unmapped: bool,
    /// The first key of each of the table's literals but the first (sorted, see
    /// [`super::Table::variables`]): a key is in the last literal whose first key is not above it.
    pub bounds: &'a [String],
}

impl Gen<'_> {
    /// The literal (`variables.tableN`) that holds `key` (an expression) if any does. One
    /// literal (every table up to about 2,200 entries) is named directly: a lookup costs as
    /// little as one `in`, which is what the cost limits below were measured with.
    fn table_for(&self, key: &str) -> String {
        let mut out = format!("variables.{TABLE_VARIABLE}{}", self.bounds.len());
        for (i, bound) in self.bounds.iter().enumerate().rev() {
            let bound = quote(bound);
            out = format!("({key} < {bound} ? variables.{TABLE_VARIABLE}{i} : {out})");
        }
        out
    }
}

/// The JSONPatch expressions, one per group of places (the numbers of `rewrite::places`), in
/// group order.
pub fn mutations(gen: &Gen) -> BTreeMap<u32, String> {
    let object = Acc::Plain("object".into());
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for item in generate(&OBJECT, &object, &Path::default(), 0, gen) {
        // Every place lies under a field that starts a group (places' tests keep it so).
        let group = item.group.unwrap_or(0);
        out.entry(group).or_default().push(item.expr);
    }
    out.into_iter()
        .map(|(g, exprs)| (g, exprs.join(" +\n")))
        .collect()
}

/// The value at a place: a plain CEL value, or an optional one (a field that may be absent).
#[derive(Clone, Debug)]
enum Acc {
    Plain(String),
    Opt(String),
}

impl Acc {
    fn field(&self, name: &str) -> Acc {
        let (Acc::Plain(base) | Acc::Opt(base)) = self;
        Acc::Opt(format!("{base}.?{name}"))
    }

    /// The value, or `default` when absent.
    fn or(&self, default: &str) -> String {
        match self {
            Acc::Plain(e) => e.clone(),
            Acc::Opt(e) => format!("{e}.orValue({default})"),
        }
    }
}

/// A JSON pointer as CEL string concatenation: the parts so far (each followed by ` + `), then
/// the constant text after them.
#[derive(Clone, Debug, Default)]
struct Path {
    parts: String,
    text: String,
}

impl Path {
    /// One constant step further (a field name).
    fn field(&self, name: &str) -> Path {
        let mut p = self.clone();
        p.text = format!("{}/{name}", p.text);
        p
    }

    /// One step further that an expression gives (an index, a key).
    fn expr(&self, e: &str) -> Path {
        let text = quote(&format!("{}/", self.text));
        let parts = format!("{}{text} + {e} + ", self.parts);
        Path {
            parts,
            text: String::new(),
        }
    }

    fn render(&self) -> String {
        match self.parts.strip_suffix(" + ") {
            Some(parts) if self.text.is_empty() => parts.to_string(),
            _ => format!("{}{}", self.parts, quote(&self.text)),
        }
    }
}

/// A CEL string literal (the texts quoted here are field names, keys and IDs: no quotes or
/// backslashes, but escape them anyway).
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A list-valued expression of patches, and the group of places it belongs to.
struct Item {
    group: Option<u32>,
    expr: String,
}

fn generate(p: &Place, acc: &Acc, path: &Path, depth: usize, gen: &Gen) -> Vec<Item> {
    match p {
        Place::Fields(fields) => {
            let mut out = Vec::new();
            for f in *fields {
                let (acc, path) = (acc.field(f.name), path.field(f.name));
                let mut items = generate(&f.place, &acc, &path, depth, gen);
                for item in &mut items {
                    item.group = item.group.or(f.group);
                    if let Some(kind) = f.when_kind {
                        let (kind, expr) = (quote(kind), &item.expr);
                        item.expr = format!("(object.?kind.orValue('') == {kind} ? {expr} : [])");
                    }
                }
                out.extend(items);
            }
            out
        }
        Place::Each(element) => {
            let (i, e) = (format!("i{depth}"), format!("e{depth}"));
            let path = path.expr(&format!("string({i})"));
            let inner = generate(element, &Acc::Plain(e.clone()), &path, depth + 1, gen);
            let mut by_group: BTreeMap<Option<u32>, Vec<String>> = BTreeMap::new();
            for item in inner {
                by_group.entry(item.group).or_default().push(item.expr);
            }
            let list = acc.or("[]");
            by_group
                .into_iter()
                .map(|(group, exprs)| {
                    let exprs = exprs.join(" + ");
                    let expr = format!("{list}.transformList({i}, {e}, {exprs}).flatten()");
                    Item { group, expr }
                })
                .collect()
        }
        Place::Labels(location) | Place::ObjectAnnotations(location) => vec![Item {
            group: None,
            expr: labels(acc, path, depth, *location, gen),
        }],
        Place::Expression(_) => vec![Item {
            group: None,
            expr: expression(acc, path, depth, gen),
        }],
        // An expression's values are read by `expression`.
        Place::Value(_) | Place::Capture(_) => Vec::new(),
    }
}

/// The patches of a labels or annotations map (or a selector's `matchLabels`).
fn labels(acc: &Acc, path: &Path, depth: usize, location: Location, gen: &Gen) -> String {
    let [k, v, r] = ["k", "v", "r"].map(|n| format!("{n}{depth}"));
    let at = path.expr(&format!("jsonpatch.escapeKey({k})")).render();
    let replace = format!("JSONPatch{{op: 'replace', path: {at}, value: {r}}}");
    // `''` is the lookup's "unmapped" (an empty value, too, is unmapped: dropped like any).
    let (keep, op) = if gen.drop_unmapped && !location.is_selector() {
        (
            format!("{r} == '' || {r} != {v}"),
            format!("{r} == '' ? JSONPatch{{op: 'remove', path: {at}}} : {replace}"),
        )
    } else {
        (format!("{r} != {v} && {r} != ''"), replace)
    };
    format!(
        "{map}.transformList({k}, {v}, {is_key} ? [{lookup}].filter({r}, {keep}).map({r}, {op}) : []).flatten()",
        map = acc.or("{}"),
        is_key = is_project_id_key(&k, depth),
        lookup = lookup(&v, depth, gen),
    )
}

/// The patches of one selector expression: each value of an `In` or `NotIn` expression on a
/// project-ID key, looked up; an unmapped value stays (a selector is never shortened).
fn expression(acc: &Acc, path: &Path, depth: usize, gen: &Gen) -> String {
    let [x, j, v, r] = ["x", "j", "v", "r"].map(|n| format!("{n}{depth}"));
    let at = path.field("values").expr(&format!("string({j})")).render();
    let body = format!(
        "{is_key} && {x}.?operator.orValue('') in ['In', 'NotIn'] ? {x}.?values.orValue([]).transformList({j}, {v}, [{lookup}].filter({r}, {r} != {v} && {r} != '').map({r}, JSONPatch{{op: 'replace', path: {at}, value: {r}}})).flatten() : []",
        is_key = is_project_id_key(&format!("{x}.?key.orValue('')"), depth),
        lookup = lookup(&v, depth, gen),
    );
    format!("[{}].map({x}, {body})[0]", acc.or("{}"))
}

/// Whether the key `k` (an expression) is a project-ID key: its prefix (before the first `/`)
/// `cattle.io` or ending in `.cattle.io`, its name `projectid` in any case
/// ([`crate::rewrite::is_project_id_key`]).
pub(crate) fn is_project_id_key(k: &str, depth: usize) -> String {
    let s = format!("s{depth}");
    format!(
        "[{k}.split('/', 2)].exists({s}, size({s}) == 2 && ({s}[0] == 'cattle.io' || {s}[0].endsWith('.cattle.io')) && {s}[1].lowerAscii() == 'projectid')"
    )
}

/// The lookup of the value `v` (a string expression, evaluated more than once: a variable), as
/// [`crate::mapping::Table::lookup_ref`] does it: the value itself when it is already a
/// destination value, its mapping, or `''` when it is unmapped.
pub(crate) fn lookup(v: &str, depth: usize, gen: &Gen) -> String {
    let s = format!("c{depth}");
    let key = |prefix: &str, e: &str| format!("('{prefix}' + {e})");
    let has = |prefix: &str, e: &str| {
        let k = key(prefix, e);
        format!("{k} in {}", gen.table_for(&k))
    };
    let get = |prefix: &str, e: &str| {
        let k = key(prefix, e);
        format!("{}[{k}]", gen.table_for(&k))
    };
    let (cluster, project) = (format!("{s}[0]"), format!("{s}[1]"));
    let cluster_form = format!(
        "[{v}.split(':', 2)].map({s}, {dc} && {dp} ? {v} : {c} && {p} ? {gc} + ':' + {gp} : '')[0]",
        dc = has(DESTINATION_CLUSTER, &cluster),
        dp = has(DESTINATION_PROJECT, &project),
        c = has(SOURCE_CLUSTER, &cluster),
        p = has(SOURCE_PROJECT, &project),
        gc = get(SOURCE_CLUSTER, &cluster),
        gp = get(SOURCE_PROJECT, &project),
    );
    let project_form = format!(
        "{dp} ? {v} : {p} ? {gp} : ''",
        dp = has(DESTINATION_PROJECT, v),
        p = has(SOURCE_PROJECT, v),
        gp = get(SOURCE_PROJECT, v),
    );
    format!("({v}.contains(':') ? {cluster_form} : {project_form})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mutation_per_group_of_places() {
        let gen = |drop_unmapped| Gen {
            drop_unmapped,
            bounds: &[],
        };
        let m = mutations(&gen(true));
        let groups: Vec<_> = m.keys().copied().collect();
        assert_eq!(groups, (0..=9).collect::<Vec<_>>());
        assert!(m[&0].contains("object.?metadata.?labels"));
        assert!(m[&0].contains("object.?metadata.?annotations"));
        assert!(m[&4].contains("object.?spec.?jobTemplate.?spec.?template.?metadata.?labels"));
        assert!(m[&5].starts_with("(object.?kind.orValue('') == 'Pod' ?"));
        assert!(m[&9].contains("'/spec/egress/' + string(i0) + '/to/' + string(i1)"));
        // Only selectors' values are never removed.
        assert!(m[&0].contains("op: 'remove'"));
        assert!(!m[&9].contains("op: 'remove'"));
        let kept = mutations(&gen(false));
        assert!(!kept.values().any(|e| e.contains("op: 'remove'")));
    }

    /// The generated lookup and key test, evaluated by cel-rust with the table literal
    /// `export-policy` writes, say what the engine says (the API server's own evaluation is
    /// checked in the cluster suite).
    mod evaluated {
        use std::sync::Arc;

        use proptest::prelude::*;
        use serde_json::{json, Value};

        use crate::mapping::objects::Mappings;
        use crate::mapping::LookupRef;
        use crate::rewrite::is_project_id_key;

        const TABLE: &str =
            "p-src1=p-dst1,p-src2=p-dst2,c-s:p-src1=c-d:p-dst1,c-s:p-x=c-d:p-y,p-same=p-same";

        fn env() -> Arc<cel::Env> {
            let mut env = cel::Env::stdlib();
            env.add_extension(cel::extensions::strings).unwrap();
            Arc::new(env)
        }

        fn eval(env: &Arc<cel::Env>, expr: &str, vars: &[(&str, Value)]) -> Value {
            let program = env.compile(expr).unwrap();
            let mut ctx = cel::Context::with_env(env.clone());
            for (name, v) in vars {
                ctx.add_variable_from_value(*name, cel::to_value(v).unwrap());
            }
            match program.execute(&ctx).unwrap() {
                cel::Value::String(s) => json!(s.as_str()),
                cel::Value::Bool(b) => json!(b),
                other => panic!("{expr}: {other:?}"),
            }
        }

        /// The lookup over the table as the policies hold it: their literals in place of the
        /// variables.
        fn lookup_over(m: &Mappings) -> String {
            let table = crate::policy::table(m);
            let gen = super::super::Gen {
                drop_unmapped: true,
                bounds: &table.bounds,
            };
            let mut expr = super::super::lookup("v0", 0, &gen);
            for v in table.variables.as_array().unwrap() {
                let name = format!("variables.{}", v["name"].as_str().unwrap());
                expr = expr.replace(&name, &format!("({})", v["expression"].as_str().unwrap()));
            }
            expr
        }

        /// A table past one expression's limit is cut into several literals, and the lookup
        /// finds values in any of them.
        #[test]
        fn a_large_table_is_looked_up_across_its_literals() {
            let text: Vec<String> = (0..2_300)
                .map(|i| format!("c-s:p-s{i:05}=c-d:p-d{i:05}"))
                .collect();
            let m = Mappings::from_text(&text.join(",")).unwrap();
            let table = crate::policy::table(&m);
            let literals = table.variables.as_array().unwrap();
            assert_eq!(literals.len(), 2);
            assert_eq!(literals[1]["name"], json!("table1"));
            for l in literals {
                let size = l["expression"].as_str().unwrap().len();
                assert!(size < crate::policy::EXPRESSION_LIMIT);
            }
            assert_eq!(table.bounds, ["p.p-s02164"]);
            let (env, expr) = (env(), lookup_over(&m));
            for (v, want) in [
                ("p-s00000", "p-d00000"),
                ("c-s:p-s02299", "c-d:p-d02299"),
                ("p-d01500", "p-d01500"),
                ("p-x", ""),
            ] {
                assert_eq!(eval(&env, &expr, &[("v0", json!(v))]), json!(want), "{v}");
            }
        }

        proptest! {
            #[test]
            fn the_lookup_is_the_tables(
                cluster in prop::sample::select(vec!["", "c-s", "c-d", "c-x", "p-src1", ":"]),
                project in prop::sample::select(vec![
                    "p-src1", "p-src2", "p-dst1", "p-dst2", "p-x", "p-y", "p-same", "p-none", "",
                    "c-s", "p-src1:p-src2", "P-SRC1",
                ]),
            ) {
                let m = Mappings::from_text(TABLE).unwrap();
                let v = if cluster.is_empty() { project.to_string() } else { format!("{cluster}:{project}") };
                let want = match m.table.lookup_ref(&v) {
                    LookupRef::Keep => v.clone(),
                    LookupRef::Rewrite(to) => to.into_owned(),
                    LookupRef::Unmapped => String::new(),
                };
                let got = eval(&env(), &lookup_over(&m), &[("v0", json!(v))]);
                prop_assert_eq!(got, json!(want), "{}", v);
            }

            #[test]
            fn the_key_test_is_the_engines(
                prefix in prop::sample::select(vec!["", "cattle.io", "field.cattle.io", "fieldcattle.io", "a.cattle.io.evil", "x/field.cattle.io"]),
                slash in prop::bool::ANY,
                name in prop::sample::select(vec!["projectId", "projectID", "PROJECTID", "projectid", "projectName", "", "x/projectId"]),
            ) {
                let key = format!("{prefix}{}{name}", if slash { "/" } else { "" });
                let got = eval(&env(), &super::super::is_project_id_key("k0", 0), &[("k0", json!(key))]);
                prop_assert_eq!(got, json!(is_project_id_key(&key)), "{}", key);
            }
        }
    }

    #[test]
    fn paths_and_quotes() {
        let p = Path::default().field("spec").expr("string(i0)").field("x");
        assert_eq!(p.render(), "'/spec/' + string(i0) + '/x'");
        assert_eq!(quote("a'b"), "'a\\'b'");
    }
}
