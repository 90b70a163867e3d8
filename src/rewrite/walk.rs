//! One walk over an object, driven by [`super::places`], that finds every project-ID value and
//! looks it up. It reads through serde, so the same walk runs on request bytes (the webhook: every
//! string it keeps is borrowed from the body, everything off the places is skipped by the parser,
//! nothing is built when no project-ID key is there) and on a decoded `serde_json::Value` (the
//! `rewrite` and `audit` commands, the tests).
//!
//! What the bytes may hold that a decoded tree does not, and how the walk agrees with the tree:
//! - the kind after the fields that depend on it: findings carry their condition, settled
//!   when the walk ends;
//! - a duplicate key: the last value wins, at the place of the first (as a decoded
//!   `serde_json::Map` keeps it): earlier findings under it are dropped or overwritten;
//! - `key` and `operator` of a selector expression after its `values`: the values are found
//!   first and dropped at the end of the expression if it does not qualify.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::decide::Verdict;
use super::keys::{is_project_id_key, MIGRATED_ANNOTATION};
use super::outcome::Location;
use super::places::{Field, ObjectText, Place, OBJECT, OBJECT_METADATA_GROUP, WIDEST};
use crate::mapping::{LookupRef, Table};

/// How deep the report order goes (group, then ranks, indexes and entry positions).
/// (The deepest place, a CronJob's preferred anti-affinity term's expression values, needs 12;
/// four to spare, and `places` tests that none is deeper.)
pub(crate) const ORDER_DEPTH: usize = 16;

/// One project-ID value found.
#[derive(Clone, Debug)]
pub struct Found<'a, 't> {
    /// Report order (see [`super::places`]).
    order: [u32; ORDER_DEPTH],
    pub location: Location,
    /// The JSON pointer (RFC 6901) of the value: a range of [`Walked::pointers`].
    pointer: (u32, u32),
    /// The label, annotation or selector key holding the value.
    pub key: Cow<'a, str>,
    pub value: Cow<'a, str>,
    pub lookup: LookupRef<'t>,
    /// Counted only for an object of this kind.
    when_kind: Option<&'static str>,
    /// Dropped: shadowed by a later duplicate key, or in an expression that does not qualify,
    /// or a placeholder for a project-ID key whose value is not a string.
    dead: bool,
    /// What it comes to, once decided ([`super::decide()`]).
    pub verdict: Verdict,
}

impl Found<'_, '_> {
    /// The value the table maps this one to (empty when it maps it to nothing).
    pub fn replacement(&self) -> &str {
        match &self.lookup {
            LookupRef::Rewrite(to) => to,
            LookupRef::Keep | LookupRef::Unmapped => "",
        }
    }
}

/// What one walk found.
#[derive(Debug, Default)]
pub struct Walked<'a, 't> {
    pub(super) found: Vec<Found<'a, 't>>,
    /// Every finding's pointer text, one after the other.
    pointers: String,
    pub kind: Option<Cow<'a, str>>,
    pub generate_name: Option<Cow<'a, str>>,
    /// Whether the object carries Stork's migrated annotation (`"true"`).
    pub migrated_annotation: bool,
}

impl<'a, 't> Walked<'a, 't> {
    /// Keeps the findings that count, in report order, once the whole object is read (its kind
    /// may come last).
    fn keep_counted(&mut self) {
        let kind = self.kind.as_deref();
        self.found
            .retain(|f| !f.dead && f.when_kind.is_none_or(|k| Some(k) == kind));
        // Orders are distinct (every finding differs in some rank, index or position), so an
        // unstable sort gives the one order, and does not allocate.
        self.found.sort_unstable_by_key(|f| f.order);
    }

    /// The findings that count, in report order.
    pub fn findings(&self) -> &[Found<'a, 't>] {
        &self.found
    }

    pub fn pointer(&self, f: &Found<'_, '_>) -> &str {
        &self.pointers[f.pointer.0 as usize..f.pointer.1 as usize]
    }
}

/// Walks one object (request bytes through `serde_json::Deserializer`, or a `&Value`).
pub fn walk<'de, 't, D: Deserializer<'de>>(
    d: D,
    table: &'t Table,
) -> Result<Walked<'de, 't>, D::Error> {
    walk_bounded(d, table, usize::MAX)
}

/// As [`walk`], refusing (with a data error) an object that holds more than `limit` values at
/// the places: what a hostile object may cost is then bounded in time (duplicate keys are
/// checked within a map) and memory (each value costs a finding and its pointer).
pub fn walk_bounded<'de, 't, D: Deserializer<'de>>(
    d: D,
    table: &'t Table,
    limit: usize,
) -> Result<Walked<'de, 't>, D::Error> {
    let mut state = WalkState {
        limit,
        table,
        out: Walked::default(),
        path: [Step::Index(0); PATH_DEPTH],
        path_len: 0,
        order: [0; ORDER_DEPTH],
        depth: None,
        when_kind: None,
    };
    PlaceSeed {
        state: &mut state,
        place: &OBJECT,
    }
    .deserialize(d)?;
    state.out.keep_counted();
    Ok(state.out)
}

/// How deep a place can be (the deepest, a CronJob's preferred anti-affinity term's expression
/// values, is 17 steps).
const PATH_DEPTH: usize = 24;

/// One step of the path to where the walk is.
#[derive(Clone, Copy, Debug)]
enum Step {
    Field(&'static str),
    Index(u32),
}

struct WalkState<'a, 't> {
    /// At most this many findings (see [`walk_bounded`]).
    limit: usize,
    table: &'t Table,
    out: Walked<'a, 't>,
    /// Where the walk is: kept on the stack, written out only for a finding.
    path: [Step; PATH_DEPTH],
    path_len: usize,
    /// The report order of where the walk is, and how much of it is set (`None` before the
    /// first group).
    order: [u32; ORDER_DEPTH],
    depth: Option<usize>,
    when_kind: Option<&'static str>,
}

impl<'a, 't> WalkState<'a, 't> {
    /// Runs `read` one place deeper (report order `order`, and `step` on the path when given),
    /// then steps back.
    fn within<R>(
        &mut self,
        order: u32,
        step: Option<Step>,
        read: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let (path_len, depth) = (self.path_len, self.depth);
        if let Some(d) = self.depth.as_mut() {
            if let Some(slot) = self.order.get_mut(*d) {
                *slot = order;
            }
            *d += 1;
        }
        if let Some(step) = step {
            if let Some(slot) = self.path.get_mut(self.path_len) {
                *slot = step;
            }
            self.path_len += 1;
        }
        let out = read(self);
        self.path_len = path_len;
        self.depth = depth;
        out
    }

    /// What the table says of a value found (`None`: not a string, a dead placeholder).
    fn look_up(&self, value: Option<Cow<'a, str>>) -> (LookupRef<'t>, bool, Cow<'a, str>) {
        match value {
            Some(v) => (self.table.lookup_ref(&v), false, v),
            None => (LookupRef::Keep, true, Cow::Borrowed("")),
        }
    }

    /// Records a value at the current path, under `key` (which ends the path when `key_in_path`:
    /// a label or annotation). `value` `None`: a project-ID key whose value is not a string,
    /// kept as a dead placeholder so a later duplicate takes its position.
    fn found<E: serde::de::Error>(
        &mut self,
        location: Location,
        key: Cow<'a, str>,
        key_in_path: bool,
        value: Option<Cow<'a, str>>,
    ) -> Result<(), E> {
        if self.out.found.len() >= self.limit {
            return Err(E::custom(format_args!(
                "more than {} project-ID values in the object",
                self.limit
            )));
        }
        if self.out.found.capacity() == 0 {
            // Sized once for a typical migrated workload (a dozen values).
            self.out.found.reserve(16);
            self.out.pointers.reserve(1024);
        }
        let pointers = &mut self.out.pointers;
        let start = pointers.len() as u32;
        for step in &self.path[..self.path_len.min(PATH_DEPTH)] {
            match step {
                Step::Field(f) => {
                    pointers.push('/');
                    pointers.push_str(f);
                }
                Step::Index(i) => {
                    use std::fmt::Write;
                    let _ = write!(pointers, "/{i}");
                }
            }
        }
        if key_in_path {
            pointers.push('/');
            push_escaped(pointers, &key);
        }
        let pointer = (start, pointers.len() as u32);
        let (lookup, dead, value) = self.look_up(value);
        self.out.found.push(Found {
            order: self.order,
            location,
            pointer,
            key,
            value,
            lookup,
            when_kind: self.when_kind,
            dead,
            verdict: Verdict::Keep,
        });
        Ok(())
    }

    /// Marks the findings in `range` as dropped.
    fn drop_range(&mut self, range: std::ops::Range<usize>) {
        for f in &mut self.out.found[range] {
            f.dead = true;
        }
    }
}

/// A JSON pointer token (RFC 6901: `~` as `~0`, `/` as `~1`).
fn push_escaped(out: &mut String, token: &str) {
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// Visitor methods for the scalars a visitor does not read, each giving `$skipped`: a value of
/// another type than the place expects is skipped (as a decoded tree's `as_object`/`as_array`
/// would give nothing).
macro_rules! skip_scalars {
    ($skipped:expr) => {
        skip_scalars!($skipped; visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64));
        skip_scalars!($skipped; visit_unit(), visit_none());
    };
    ($skipped:expr; $($visit:ident($($ty:ty)?)),+) => {
        $(
            fn $visit<E>(self, $(_: $ty)?) -> Result<Self::Value, E> {
                Ok($skipped)
            }
        )+
    };
}

/// A place to read, with the walk's state.
struct PlaceSeed<'c, 'a, 't> {
    state: &'c mut WalkState<'a, 't>,
    place: &'static Place,
}

impl<'de, 't> DeserializeSeed<'de> for PlaceSeed<'_, 'de, 't> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.place {
            Place::Capture(what) => {
                let s = d.deserialize_any(MaybeStr)?;
                let out = &mut self.state.out;
                match what {
                    ObjectText::Kind => out.kind = s,
                    ObjectText::GenerateName => out.generate_name = s,
                }
                Ok(())
            }
            Place::Value(location) => match d.deserialize_any(MaybeStr)? {
                Some(v) => self.state.found(*location, "".into(), false, Some(v)),
                None => Ok(()),
            },
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for PlaceSeed<'_, 'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    skip_scalars!(());
    skip_scalars!((); visit_str(&str));

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Place::Each(place) = self.place else {
            return IgnoredAny.visit_seq(seq).map(drop);
        };
        let state = self.state;
        let mut i = 0u32;
        loop {
            let more = state.within(i, Some(Step::Index(i)), |state| {
                seq.next_element_seed(PlaceSeed { state, place })
            })?;
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        match self.place {
            Place::Fields(fields) => visit_fields(self.state, fields, map),
            Place::Labels(location) => visit_labels(self.state, *location, false, map),
            Place::ObjectAnnotations(location) => visit_labels(self.state, *location, true, map),
            Place::Expression(values) => visit_expression(self.state, values, map),
            Place::Each(_) | Place::Value(_) | Place::Capture(_) => {
                IgnoredAny.visit_map(map).map(drop)
            }
        }
    }
}

/// An object place: each known field walked, the rest skipped. A field seen again replaces what
/// was found under it before.
fn visit_fields<'de, A: MapAccess<'de>>(
    state: &mut WalkState<'de, '_>,
    fields: &'static [Field],
    mut map: A,
) -> Result<(), A::Error> {
    // The findings each field's last visit made (a field seen again replaces them; findings of
    // the fields in between stay).
    let mut seen: [Option<std::ops::Range<usize>>; WIDEST] = std::array::from_fn(|_| None);
    while let Some(key) = map.next_key_seed(CowStr)? {
        let Some((index, field)) = fields.iter().enumerate().find(|(_, f)| f.name == key) else {
            map.next_value::<IgnoredAny>()?;
            continue;
        };
        if let Some(earlier) = seen[index].take() {
            state.drop_range(earlier);
        }
        let first = state.out.found.len();
        let saved = (state.depth, state.order, state.when_kind);
        if let Some(g) = field.group {
            state.order = [0; ORDER_DEPTH];
            state.order[0] = g;
            state.depth = Some(1);
        }
        state.when_kind = field.when_kind.or(state.when_kind);
        if matches!(field.place, Place::ObjectAnnotations(_)) {
            // Seen (again): whatever its value, only this one says whether the object is
            // migrated (a decoded tree keeps the last value, map or not).
            state.out.migrated_annotation = false;
        }
        if field.group == Some(OBJECT_METADATA_GROUP) {
            // The object's metadata (seen again: the last one counts): what it says starts over.
            state.out.generate_name = None;
            state.out.migrated_annotation = false;
        }
        state.within(field.rank, Some(Step::Field(field.name)), |state| {
            let place = &field.place;
            map.next_value_seed(PlaceSeed { state, place })
        })?;
        (state.depth, state.order, state.when_kind) = saved;
        seen[index] = Some(first..state.out.found.len());
    }
    Ok(())
}

/// A labels or annotations map. `object_annotations`: also reads Stork's migrated annotation.
fn visit_labels<'de, A: MapAccess<'de>>(
    state: &mut WalkState<'de, '_>,
    location: Location,
    object_annotations: bool,
    mut map: A,
) -> Result<(), A::Error> {
    // (Stork's migrated annotation was reset when the field was entered: `visit_fields`.)
    let start = state.out.found.len();
    let mut position = 0u32;
    while let Some(key) = map.next_key_seed(CowStr)? {
        position += 1;
        if object_annotations && key == MIGRATED_ANNOTATION {
            let v = map.next_value_seed(MaybeStr)?;
            state.out.migrated_annotation = v.as_deref() == Some("true");
            continue;
        }
        if !is_project_id_key(&key) {
            map.next_value::<IgnoredAny>()?;
            continue;
        }
        let value = map.next_value_seed(MaybeStr)?;
        // A duplicate key: the last value, at the first one's place.
        let earlier = state.out.found[start..].iter().position(|f| f.key == key);
        match earlier {
            Some(i) => {
                let (lookup, dead, value) = state.look_up(value);
                let f = &mut state.out.found[start + i];
                (f.lookup, f.dead, f.value) = (lookup, dead, value);
            }
            None => state.within(position, None, |state| {
                state.found::<A::Error>(location, key, true, value)
            })?,
        }
    }
    Ok(())
}

/// One selector expression: its values count when `key` is a project-ID key and `operator` is
/// `In` or `NotIn`, whichever order the fields come in.
fn visit_expression<'de, A: MapAccess<'de>>(
    state: &mut WalkState<'de, '_>,
    values: &'static Place,
    mut map: A,
) -> Result<(), A::Error> {
    let start = state.out.found.len();
    let (mut key, mut operator) = (None::<Cow<'de, str>>, None::<Cow<'de, str>>);
    let mut earlier_values = None::<std::ops::Range<usize>>;
    while let Some(field) = map.next_key_seed(CowStr)? {
        match &*field {
            "key" => key = map.next_value_seed(MaybeStr)?,
            "operator" => operator = map.next_value_seed(MaybeStr)?,
            "values" => {
                if let Some(earlier) = earlier_values.take() {
                    state.drop_range(earlier);
                }
                let first = state.out.found.len();
                state.within(0, Some(Step::Field("values")), |state| {
                    map.next_value_seed(PlaceSeed {
                        state,
                        place: values,
                    })
                })?;
                earlier_values = Some(first..state.out.found.len());
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    let key = key.unwrap_or_default();
    let qualifies = is_project_id_key(&key)
        && matches!(operator.as_deref().unwrap_or_default(), "In" | "NotIn");
    if qualifies {
        for f in &mut state.out.found[start..] {
            f.key = key.clone();
        }
    } else {
        let end = state.out.found.len();
        state.drop_range(start..end);
    }
    Ok(())
}

/// A string, borrowed from the input when it has no escapes; anything else is a type error.
pub struct CowStr;

impl<'de> DeserializeSeed<'de> for CowStr {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for CowStr {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// A value that counts only when it is a string (anything else is skipped).
struct MaybeStr;

impl<'de> DeserializeSeed<'de> for MaybeStr {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MaybeStr {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    skip_scalars!(None);
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }
}
