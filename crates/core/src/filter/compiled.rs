//! A filter prepared for matching many events: validated once, strings folded once, keys
//! split once, number sets sorted once.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::fold;
use super::model::{AdvancedFilter, Condition, EventFilter, FilterError};
use super::view::EventView;
use crate::event::EventSchema;

/// An [`EventFilter`] compiled for matching.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    /// Folded, sorted, without duplicates; `None` matches every type.
    event_types: Option<Box<[Box<str>]>>,
    /// Folded unless `subject_case_sensitive`; `None` when absent or empty.
    subject_begins_with: Option<Box<str>>,
    subject_ends_with: Option<Box<str>>,
    subject_case_sensitive: bool,
    arrays: bool,
    advanced: Box<[CompiledAdvanced]>,
}

impl CompiledFilter {
    /// Validates `filter` ([`EventFilter::validate`]) and compiles it.
    pub fn new(filter: &EventFilter) -> Result<CompiledFilter, FilterError> {
        filter.validate()?;
        let event_types = filter.included_event_types.as_ref().and_then(|types| {
            let mut folded: Vec<Box<str>> = types.iter().map(|t| fold::fold(t).into()).collect();
            // Event Grid's documentation: "specify All to get all event types".
            if folded.iter().any(|t| &**t == "all") {
                return None;
            }
            folded.sort_unstable();
            folded.dedup();
            Some(folded.into_boxed_slice())
        });
        let case_sensitive = filter.is_subject_case_sensitive;
        let subject = |s: &Option<String>| -> Option<Box<str>> {
            let s = s.as_deref().filter(|s| !s.is_empty())?;
            Some(if case_sensitive { s.into() } else { fold::fold(s).into() })
        };
        Ok(CompiledFilter {
            event_types,
            subject_begins_with: subject(&filter.subject_begins_with),
            subject_ends_with: subject(&filter.subject_ends_with),
            subject_case_sensitive: case_sensitive,
            arrays: filter.enable_advanced_filtering_on_arrays,
            advanced: filter.advanced_filters.iter().map(CompiledAdvanced::new).collect(),
        })
    }

    /// Whether the event passes every condition of the filter.
    pub fn matches(&self, event: &EventView<'_>) -> bool {
        self.matches_with(event, &mut LookupCache::new())
    }

    fn matches_with<'v>(&self, event: &EventView<'v>, cache: &mut LookupCache<'v>) -> bool {
        let type_ok = match &self.event_types {
            None => true,
            Some(types) => types.iter().any(|t| **t == *event.folded_event_type()),
        };
        let prefix_ok = match &self.subject_begins_with {
            None => true,
            Some(prefix) => self.subject(event).starts_with(&**prefix),
        };
        type_ok && prefix_ok && self.matches_rest(event, cache)
    }

    /// The conditions a [`super::RoutingTable`] does not index: the subject's suffix and
    /// the advanced filters.
    pub(crate) fn matches_rest<'v>(&self, event: &EventView<'v>, cache: &mut LookupCache<'v>) -> bool {
        let suffix_ok = match &self.subject_ends_with {
            None => true,
            Some(suffix) => self.subject(event).ends_with(&**suffix),
        };
        suffix_ok
            && self
                .advanced
                .iter()
                .all(|filter| filter.matches(event, self.arrays, cache))
    }

    /// The keys of the advanced filters, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.advanced.iter().map(|filter| &*filter.key)
    }

    /// Numbers the keys and the advanced filters for a [`LookupCache`], one (key,
    /// condition) pair per advanced filter, in order. Two advanced filters may share a
    /// condition number only if they are the same filter under the same
    /// `enableAdvancedFilteringOnArrays`.
    pub(crate) fn set_ids(&mut self, ids: impl IntoIterator<Item = (u32, u32)>) {
        for (filter, (key_id, condition_id)) in self.advanced.iter_mut().zip(ids) {
            filter.key_id = key_id;
            filter.condition_id = condition_id;
        }
    }

    /// Whether [`Self::matches_rest`] can be false, i.e. the index does not decide alone.
    pub(crate) fn has_rest(&self) -> bool {
        self.subject_ends_with.is_some() || !self.advanced.is_empty()
    }

    /// The subject as this filter compares it.
    fn subject<'e>(&self, event: &'e EventView<'_>) -> &'e str {
        if self.subject_case_sensitive {
            event.subject()
        } else {
            event.folded_subject()
        }
    }

    pub(crate) fn event_types(&self) -> Option<&[Box<str>]> {
        self.event_types.as_deref()
    }

    pub(crate) fn subject_begins_with(&self) -> Option<&str> {
        self.subject_begins_with.as_deref()
    }

    pub(crate) fn is_subject_case_sensitive(&self) -> bool {
        self.subject_case_sensitive
    }
}

/// What one event's routing learnt so far: the values found at keys and the results of
/// advanced filters, so that the many subscriptions that filter on one key (often with
/// one condition) look it up and test it once. A routing table numbers keys and conditions
/// ([`CompiledFilter::set_ids`]); the caches are direct-mapped and live on the stack, so a
/// collision costs only a second evaluation and routing allocates nothing.
pub(crate) struct LookupCache<'v> {
    values: [(u32, Option<&'v Value>); CACHE_SIZE],
    results: [(u32, bool); CACHE_SIZE],
}

const CACHE_SIZE: usize = 64;

/// The id of a key or condition nobody numbered: never cached.
const UNNUMBERED: u32 = u32::MAX;

impl<'v> LookupCache<'v> {
    pub(crate) fn new() -> LookupCache<'v> {
        LookupCache {
            values: [(UNNUMBERED, None); CACHE_SIZE],
            results: [(UNNUMBERED, false); CACHE_SIZE],
        }
    }
}

/// `entries[id]`, computed by `compute` unless cached.
fn cached<T: Copy>(entries: &mut [(u32, T); CACHE_SIZE], id: u32, compute: impl FnOnce() -> T) -> T {
    if id == UNNUMBERED {
        return compute();
    }
    let entry = &mut entries[id as usize % CACHE_SIZE];
    if entry.0 != id {
        *entry = (id, compute());
    }
    entry.1
}

#[derive(Debug, Clone)]
struct CompiledAdvanced {
    key: Box<str>,
    /// The numbers of the key and of the whole filter for a [`LookupCache`].
    key_id: u32,
    condition_id: u32,
    /// The segments after `data` if the key starts with exactly `data` (read from the
    /// view's cached data), else all of them.
    path: Box<[Segment]>,
    from_data: bool,
    /// The key names a top-level attribute other than `data`: for a CloudEvent a context
    /// attribute, whose number and boolean values string operators read in their canonical
    /// string form (Event Grid's documentation filters `"comexampleothervalue": 5` with
    /// `StringBeginsWith "5"`).
    context_attribute: bool,
    test: Test,
    /// Negative operators are the negation of their positive twin once the key has a value.
    negate: bool,
    /// The result when the key is missing or null.
    if_missing: bool,
}

#[derive(Debug, Clone)]
struct Segment {
    exact: Box<str>,
    folded: Box<str>,
}

/// The positive test of an operator, applied to one value. Strings are folded.
#[derive(Debug, Clone)]
enum Test {
    /// Sorted.
    NumberIn(Box<[f64]>),
    NumberInRanges(Box<[[f64; 2]]>),
    NumberLessThan(f64),
    NumberGreaterThan(f64),
    NumberLessThanOrEquals(f64),
    NumberGreaterThanOrEquals(f64),
    BoolEquals(bool),
    StringIn(Box<[Box<str>]>),
    StringBeginsWith(Box<[Box<str>]>),
    StringEndsWith(Box<[Box<str>]>),
    StringContains(Box<[Box<str>]>),
    /// The key has a value other than null.
    Defined,
}

impl CompiledAdvanced {
    fn new(filter: &AdvancedFilter) -> CompiledAdvanced {
        let sorted = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_unstable_by(|a, b| a.partial_cmp(b).expect("validated numbers are finite"));
            v.into_boxed_slice()
        };
        let folded = |v: &[String]| v.iter().map(|s| fold::fold(s).into()).collect();
        let (test, negate) = match &filter.condition {
            Condition::NumberIn(v) => (Test::NumberIn(sorted(v)), false),
            Condition::NumberNotIn(v) => (Test::NumberIn(sorted(v)), true),
            Condition::NumberLessThan(x) => (Test::NumberLessThan(*x), false),
            Condition::NumberGreaterThan(x) => (Test::NumberGreaterThan(*x), false),
            Condition::NumberLessThanOrEquals(x) => (Test::NumberLessThanOrEquals(*x), false),
            Condition::NumberGreaterThanOrEquals(x) => (Test::NumberGreaterThanOrEquals(*x), false),
            Condition::NumberInRange(r) => (Test::NumberInRanges(r.clone().into()), false),
            Condition::NumberNotInRange(r) => (Test::NumberInRanges(r.clone().into()), true),
            Condition::BoolEquals(b) => (Test::BoolEquals(*b), false),
            Condition::StringIn(v) => (Test::StringIn(folded(v)), false),
            Condition::StringNotIn(v) => (Test::StringIn(folded(v)), true),
            Condition::StringBeginsWith(v) => (Test::StringBeginsWith(folded(v)), false),
            Condition::StringNotBeginsWith(v) => (Test::StringBeginsWith(folded(v)), true),
            Condition::StringEndsWith(v) => (Test::StringEndsWith(folded(v)), false),
            Condition::StringNotEndsWith(v) => (Test::StringEndsWith(folded(v)), true),
            Condition::StringContains(v) => (Test::StringContains(folded(v)), false),
            Condition::StringNotContains(v) => (Test::StringContains(folded(v)), true),
            Condition::IsNullOrUndefined => (Test::Defined, true),
            Condition::IsNotNull => (Test::Defined, false),
        };
        // Event Grid's documentation: a missing key matches NumberNotIn and StringNotIn and
        // no other operator (besides IsNullOrUndefined); docs/filtering.md has the table.
        let if_missing = matches!(
            filter.condition,
            Condition::NumberNotIn(_) | Condition::StringNotIn(_) | Condition::IsNullOrUndefined
        );
        let segments: Vec<&str> = filter.key.split('.').collect();
        let from_data = segments[0] == "data";
        let path = segments[usize::from(from_data)..]
            .iter()
            .map(|s| Segment {
                exact: (*s).into(),
                folded: fold::fold(s).into(),
            })
            .collect();
        CompiledAdvanced {
            key: filter.key.as_str().into(),
            key_id: UNNUMBERED,
            condition_id: UNNUMBERED,
            context_attribute: segments.len() == 1 && fold::fold(segments[0]) != "data",
            path,
            from_data,
            test,
            negate,
            if_missing,
        }
    }

    fn matches<'v>(&self, event: &EventView<'v>, arrays: bool, cache: &mut LookupCache<'v>) -> bool {
        let values = &mut cache.values;
        cached(&mut cache.results, self.condition_id, || {
            let value = cached(values, self.key_id, || self.lookup(event));
            self.matches_value(value, event.schema(), arrays)
        })
    }

    fn matches_value(&self, value: Option<&Value>, schema: EventSchema, arrays: bool) -> bool {
        let value = match value {
            None | Some(Value::Null) => return self.if_missing,
            Some(value) => value,
        };
        if let Test::Defined = self.test {
            return !self.negate;
        }
        let coerce = self.context_attribute && schema == EventSchema::CloudEventSchemaV1_0;
        let hit = match value {
            Value::Array(items) if arrays => items.iter().any(|item| self.test(item, coerce)),
            // Without enableAdvancedFilteringOnArrays an array is a value of no operator's
            // type, like an object.
            _ => self.test(value, coerce),
        };
        hit != self.negate
    }

    fn lookup<'v>(&self, event: &EventView<'v>) -> Option<&'v Value> {
        let start = if self.from_data { event.data()? } else { event.json() };
        self.path.iter().try_fold(start, |current, segment| match current {
            Value::Object(map) => property(map, &segment.exact, &segment.folded),
            _ => None,
        })
    }

    /// The positive test on one value; values of another type never pass.
    fn test(&self, value: &Value, coerce: bool) -> bool {
        let text = || -> Option<Cow<'_, str>> {
            match value {
                Value::String(s) => Some(Cow::Borrowed(s)),
                Value::Bool(b) if coerce => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
                // Allocates, but only for a number in a CloudEvents extension attribute.
                Value::Number(n) if coerce => Some(Cow::Owned(n.to_string())),
                _ => None,
            }
        };
        let any_text = |needles: &[Box<str>], test: fn(&str, &str) -> bool| {
            text().is_some_and(|s| needles.iter().any(|needle| test(&s, needle)))
        };
        match &self.test {
            Test::NumberIn(set) => value.as_f64().is_some_and(|x| {
                set.binary_search_by(|probe| probe.partial_cmp(&x).expect("numbers are finite"))
                    .is_ok()
            }),
            Test::NumberInRanges(ranges) => value
                .as_f64()
                .is_some_and(|x| ranges.iter().any(|[lo, hi]| *lo <= x && x <= *hi)),
            Test::NumberLessThan(bound) => value.as_f64().is_some_and(|x| x < *bound),
            Test::NumberGreaterThan(bound) => value.as_f64().is_some_and(|x| x > *bound),
            Test::NumberLessThanOrEquals(bound) => value.as_f64().is_some_and(|x| x <= *bound),
            Test::NumberGreaterThanOrEquals(bound) => value.as_f64().is_some_and(|x| x >= *bound),
            Test::BoolEquals(expected) => value.as_bool() == Some(*expected),
            Test::StringIn(needles) => any_text(needles, fold::eq),
            Test::StringBeginsWith(needles) => any_text(needles, fold::starts_with),
            Test::StringEndsWith(needles) => any_text(needles, fold::ends_with),
            Test::StringContains(needles) => any_text(needles, fold::contains),
            Test::Defined => true,
        }
    }
}

/// A property by name: the exact name if present, otherwise the first property (in
/// document order) whose name is equal ignoring case (`folded` is the name folded).
pub(crate) fn property<'v>(map: &'v Map<String, Value>, exact: &str, folded: &str) -> Option<&'v Value> {
    // Objects in events are small: scanning the names beats hashing the name.
    const SCAN_LIMIT: usize = 16;
    let found = if map.len() <= SCAN_LIMIT {
        map.iter().find(|(name, _)| *name == exact).map(|(_, value)| value)
    } else {
        map.get(exact)
    };
    // Only names of the folded name's length can be equal ignoring case, unless they have
    // non-ASCII letters, whose folded form may be longer or shorter.
    found.or_else(|| {
        map.iter()
            .find(|(name, _)| (name.len() == folded.len() || !name.is_ascii()) && fold::eq(name, folded))
            .map(|(_, value)| value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(json: Value) -> CompiledFilter {
        CompiledFilter::new(&serde_json::from_value(json).unwrap()).unwrap()
    }

    fn advanced(op: &str, key: &str, arg: Value) -> CompiledFilter {
        let mut f = json!({"operatorType": op, "key": key});
        match arg {
            Value::Null => {}
            Value::Array(_) => f["values"] = arg,
            _ => f["value"] = arg,
        }
        filter(json!({"advancedFilters": [f]}))
    }

    fn on_arrays(op: &str, key: &str, values: Value) -> CompiledFilter {
        filter(json!({
            "enableAdvancedFilteringOnArrays": true,
            "advancedFilters": [{"operatorType": op, "key": key, "values": values}]
        }))
    }

    fn grid(data: Value) -> Value {
        json!({
            "topic": "/t", "subject": "Models/Churn:3", "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
            "eventTime": "2026-11-26T16:00:00.0000000Z", "id": "ID-1", "data": data,
            "dataVersion": "1.0", "metadataVersion": "1"
        })
    }

    fn matches(filter: &CompiledFilter, event: &Value) -> bool {
        filter.matches(&EventView::new(EventSchema::EventGridSchema, event))
    }

    #[test]
    fn event_types_compare_ignoring_case_and_all_means_every_type() {
        let event = grid(json!({}));
        assert!(matches(
            &filter(json!({"includedEventTypes": ["x", "microsoft.machinelearningservices.MODELREGISTERED"]})),
            &event
        ));
        assert!(!matches(&filter(json!({"includedEventTypes": ["x"]})), &event));
        assert!(matches(&filter(json!({"includedEventTypes": ["x", "all"]})), &event));
        assert!(matches(&filter(json!({})), &event));
    }

    #[test]
    fn subject_filters_ignore_case_unless_asked() {
        let event = grid(json!({}));
        assert!(matches(
            &filter(json!({"subjectBeginsWith": "models/CHURN:", "subjectEndsWith": ":3"})),
            &event
        ));
        assert!(!matches(
            &filter(json!({"subjectBeginsWith": "models/", "isSubjectCaseSensitive": true})),
            &event
        ));
        assert!(matches(
            &filter(json!({"subjectBeginsWith": "Models/", "subjectEndsWith": "n:3", "isSubjectCaseSensitive": true})),
            &event
        ));
        assert!(!matches(&filter(json!({"subjectEndsWith": "churn"})), &event));
        assert!(matches(
            &filter(json!({"subjectBeginsWith": "", "subjectEndsWith": ""})),
            &event
        ));
    }

    #[test]
    fn number_operators() {
        let event = grid(json!({"n": 5, "f": 2.5, "s": "5"}));
        let cases = [
            ("NumberIn", "data.n", json!([1, 5]), true),
            ("NumberIn", "data.n", json!([5.0]), true),
            ("NumberIn", "data.n", json!([1, 2]), false),
            ("NumberIn", "data.s", json!([5]), false),
            ("NumberNotIn", "data.n", json!([1, 2]), true),
            ("NumberNotIn", "data.n", json!([5, 2]), false),
            ("NumberNotIn", "data.s", json!([5]), true),
            ("NumberLessThan", "data.n", json!(6), true),
            ("NumberLessThan", "data.n", json!(5), false),
            ("NumberLessThanOrEquals", "data.n", json!(5), true),
            ("NumberGreaterThan", "data.f", json!(2), true),
            ("NumberGreaterThan", "data.f", json!(2.5), false),
            ("NumberGreaterThanOrEquals", "data.f", json!(2.5), true),
            ("NumberGreaterThan", "data.s", json!(1), false),
            ("NumberInRange", "data.n", json!([[0, 1], [5, 6]]), true),
            ("NumberInRange", "data.n", json!([[0, 4.99], [5.01, 6]]), false),
            ("NumberInRange", "data.f", json!([[2.5, 2.5]]), true),
            ("NumberNotInRange", "data.n", json!([[5, 5]]), false),
            ("NumberNotInRange", "data.n", json!([[6, 9]]), true),
            ("NumberNotInRange", "data.s", json!([[0, 9]]), true),
        ];
        for (op, key, arg, expected) in cases {
            assert_eq!(
                matches(&advanced(op, key, arg.clone()), &event),
                expected,
                "{op} {key} {arg}"
            );
        }
    }

    #[test]
    fn bool_and_string_operators_ignore_case() {
        let event = grid(json!({"ok": true, "name": "Azure Data Factory", "t": "true"}));
        let cases = [
            ("BoolEquals", "data.ok", json!(true), true),
            ("BoolEquals", "data.ok", json!(false), false),
            ("BoolEquals", "data.t", json!(true), false),
            ("StringIn", "data.name", json!(["azure data factory"]), true),
            ("StringIn", "data.name", json!(["azure"]), false),
            ("StringNotIn", "data.name", json!(["AZURE DATA FACTORY"]), false),
            ("StringNotIn", "data.name", json!(["x"]), true),
            ("StringBeginsWith", "data.name", json!(["x", "AZURE"]), true),
            ("StringNotBeginsWith", "data.name", json!(["azure"]), false),
            ("StringEndsWith", "data.name", json!(["FACTORY"]), true),
            ("StringNotEndsWith", "data.name", json!(["data"]), true),
            ("StringContains", "data.name", json!(["microsoft", "DATA"]), true),
            ("StringNotContains", "data.name", json!(["contoso", "fabrikam"]), true),
            ("StringNotContains", "data.name", json!(["data"]), false),
            ("StringIn", "data.ok", json!(["true"]), false),
            ("StringNotIn", "data.ok", json!(["true"]), true),
        ];
        for (op, key, arg, expected) in cases {
            assert_eq!(
                matches(&advanced(op, key, arg.clone()), &event),
                expected,
                "{op} {key} {arg}"
            );
        }
    }

    /// Event Grid's table: a missing key matches NumberNotIn, StringNotIn and
    /// IsNullOrUndefined only. A null value counts as missing.
    #[test]
    fn missing_and_null_keys() {
        let missing_matches = [
            ("NumberIn", json!([1]), false),
            ("NumberNotIn", json!([1]), true),
            ("NumberLessThan", json!(1), false),
            ("NumberGreaterThan", json!(1), false),
            ("NumberLessThanOrEquals", json!(1), false),
            ("NumberGreaterThanOrEquals", json!(1), false),
            ("NumberInRange", json!([[0, 1]]), false),
            ("NumberNotInRange", json!([[0, 1]]), false),
            ("BoolEquals", json!(true), false),
            ("StringIn", json!(["a"]), false),
            ("StringNotIn", json!(["a"]), true),
            ("StringBeginsWith", json!(["a"]), false),
            ("StringNotBeginsWith", json!(["a"]), false),
            ("StringEndsWith", json!(["a"]), false),
            ("StringNotEndsWith", json!(["a"]), false),
            ("StringContains", json!(["a"]), false),
            ("StringNotContains", json!(["a"]), false),
            ("IsNullOrUndefined", Value::Null, true),
            ("IsNotNull", Value::Null, false),
        ];
        for event in [
            grid(json!({"other": 1})),
            grid(json!({"key": null})),
            grid(json!("a string")),
            grid(json!({"key": {"deeper": 1}})),
        ] {
            for (op, arg, expected) in &missing_matches {
                let key = if event["data"]["key"].is_object() {
                    "data.key.deeper.still"
                } else {
                    "data.key"
                };
                assert_eq!(
                    matches(&advanced(op, key, arg.clone()), &event),
                    *expected,
                    "{op} on {event}"
                );
            }
        }
        assert!(matches(
            &advanced("IsNotNull", "data.key", Value::Null),
            &grid(json!({"key": 0}))
        ));
        assert!(matches(
            &advanced("IsNotNull", "data.key", Value::Null),
            &grid(json!({"key": []}))
        ));
    }

    #[test]
    fn arrays_match_only_when_enabled_and_then_by_any_element() {
        let event = grid(json!({"tags": ["Blue", "green", 3, null, ["red"], {"x": "red"}]}));
        // Without the flag an array is a value of the wrong type.
        assert!(!matches(&advanced("StringIn", "data.tags", json!(["blue"])), &event));
        assert!(matches(&advanced("StringNotIn", "data.tags", json!(["blue"])), &event));
        assert!(matches(&advanced("IsNotNull", "data.tags", Value::Null), &event));
        // With it, any element of the right type may match; others are ignored.
        assert!(matches(&on_arrays("StringIn", "data.tags", json!(["blue"])), &event));
        assert!(!matches(&on_arrays("StringIn", "data.tags", json!(["red"])), &event));
        assert!(matches(&on_arrays("NumberIn", "data.tags", json!([3])), &event));
        assert!(!matches(
            &on_arrays("StringNotIn", "data.tags", json!(["GREEN"])),
            &event
        ));
        assert!(matches(&on_arrays("StringNotIn", "data.tags", json!(["red"])), &event));
        assert!(!matches(
            &on_arrays("StringNotContains", "data.tags", json!(["lu"])),
            &event
        ));
        // A scalar is a one-element array; an empty array has no element to match.
        assert!(matches(
            &on_arrays("NumberIn", "data.n", json!([1])),
            &grid(json!({"n": 1}))
        ));
        let empty = grid(json!({"tags": []}));
        assert!(!matches(&on_arrays("StringIn", "data.tags", json!(["a"])), &empty));
        assert!(matches(&on_arrays("StringNotIn", "data.tags", json!(["a"])), &empty));
        assert!(matches(
            &on_arrays("StringNotContains", "data.tags", json!(["a"])),
            &empty
        ));
    }

    #[test]
    fn keys_name_envelope_attributes_and_data_paths_ignoring_case() {
        let event = grid(json!({"Model": {"Name": "churn", "name": "other"}, "Size": 3}));
        let cases = [
            ("StringIn", "Subject", json!(["models/churn:3"]), true),
            ("StringIn", "ID", json!(["id-1"]), true),
            (
                "StringIn",
                "eventtype",
                json!(["Microsoft.MachineLearningServices.ModelRegistered"]),
                true,
            ),
            ("StringIn", "DataVersion", json!(["1.0"]), true),
            ("StringIn", "Topic", json!(["/T"]), true),
            ("StringIn", "Data.Model.Name", json!(["churn"]), true),
            // The exact name wins over a name equal ignoring case.
            ("StringIn", "data.Model.name", json!(["other"]), true),
            ("StringIn", "data.model.NAME", json!(["churn"]), true),
            ("NumberIn", "data.size", json!([3]), true),
        ];
        for (op, key, arg, expected) in cases {
            assert_eq!(
                matches(&advanced(op, key, arg.clone()), &event),
                expected,
                "{op} {key} {arg}"
            );
        }
    }

    #[test]
    fn cloud_events_expose_attributes_and_extensions() {
        let event = json!({
            "specversion": "1.0", "type": "com.example.someevent", "source": "/mycontext", "id": "C234-1234-1234",
            "time": "2018-04-05T17:31:00Z", "subject": null, "comexampleextension1": "value",
            "comexampleothervalue": 5, "flag": true, "datacontenttype": "application/json",
            "data": {"appinfoA": "abc", "appinfoB": 123, "appinfoC": true}
        });
        let cloud = |f: &CompiledFilter| f.matches(&EventView::new(EventSchema::CloudEventSchemaV1_0, &event));
        // The example of Event Grid's documentation.
        assert!(cloud(&advanced(
            "StringBeginsWith",
            "comexampleothervalue",
            json!(["5", "1"])
        )));
        assert!(cloud(&advanced("NumberIn", "comexampleothervalue", json!([5]))));
        assert!(cloud(&advanced("StringIn", "flag", json!(["TRUE"]))));
        assert!(cloud(&advanced("StringIn", "type", json!(["com.example.someevent"]))));
        assert!(cloud(&advanced("StringIn", "Source", json!(["/mycontext"]))));
        assert!(cloud(&advanced("StringIn", "specversion", json!(["1.0"]))));
        assert!(cloud(&advanced("IsNullOrUndefined", "subject", Value::Null)));
        assert!(cloud(&advanced("BoolEquals", "data.appinfoC", json!(true))));
        // Data values keep their type: no string form of a number in data.
        assert!(!cloud(&advanced("StringIn", "data.appinfoB", json!(["123"]))));
        // Nor in the Event Grid schema.
        let grid_event = json!({"eventType": "t", "subject": "s", "n": 5});
        let view = EventView::new(EventSchema::EventGridSchema, &grid_event);
        assert!(!advanced("StringIn", "n", json!(["5"])).matches(&view));
    }
}
