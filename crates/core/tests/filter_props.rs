//! Property tests of the filter engine: the compiled filters and the routing index agree
//! with a reference evaluator written straight from docs/filtering.md, on random events
//! and random filters drawn from a small vocabulary so that matches happen often.

use mlgrid_core::EventSchema;
use mlgrid_core::filter::{AdvancedFilter, CompiledFilter, Condition, EventFilter, EventView, RoutingTable};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------
// The reference: plain code over the uncompiled filter and the raw JSON, no index, no
// shortcuts. Folding is per character, as docs/filtering.md defines "ignoring case".

fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn reference_matches(filter: &EventFilter, schema: EventSchema, event: &Value) -> bool {
    let type_attribute = match schema {
        EventSchema::EventGridSchema => "eventType",
        EventSchema::CloudEventSchemaV1_0 => "type",
    };
    let event_type = event.get(type_attribute).and_then(Value::as_str).unwrap_or("");
    let subject = event.get("subject").and_then(Value::as_str).unwrap_or("");

    if let Some(types) = &filter.included_event_types {
        let all = types.iter().any(|t| fold(t) == "all");
        let listed = types.iter().any(|t| fold(t) == fold(event_type));
        if !all && !listed {
            return false;
        }
    }

    let prefix = filter.subject_begins_with.clone().unwrap_or_default();
    let suffix = filter.subject_ends_with.clone().unwrap_or_default();
    let (subject, prefix, suffix) = if filter.is_subject_case_sensitive {
        (subject.to_owned(), prefix, suffix)
    } else {
        (fold(subject), fold(&prefix), fold(&suffix))
    };
    if !subject.starts_with(&prefix) || !subject.ends_with(&suffix) {
        return false;
    }

    for advanced in &filter.advanced_filters {
        if !reference_advanced(advanced, filter.enable_advanced_filtering_on_arrays, schema, event) {
            return false;
        }
    }
    true
}

fn reference_lookup<'a>(event: &'a Value, key: &str) -> Option<&'a Value> {
    let mut current = event;
    for segment in key.split('.') {
        let object = current.as_object()?;
        current = match object.get(segment) {
            Some(value) => value,
            None => object.iter().find(|(name, _)| fold(name) == fold(segment))?.1,
        };
    }
    Some(current)
}

fn reference_advanced(filter: &AdvancedFilter, arrays: bool, schema: EventSchema, event: &Value) -> bool {
    use Condition::*;

    let value = match reference_lookup(event, &filter.key) {
        None | Some(Value::Null) => {
            return matches!(filter.condition, NumberNotIn(_) | StringNotIn(_) | IsNullOrUndefined);
        }
        Some(value) => value,
    };

    let candidates: Vec<&Value> = match value {
        Value::Array(items) if arrays => items.iter().collect(),
        other => vec![other],
    };
    let context_attribute =
        schema == EventSchema::CloudEventSchemaV1_0 && !filter.key.contains('.') && fold(&filter.key) != "data";
    let numbers: Vec<f64> = candidates.iter().filter_map(|v| v.as_f64()).collect();
    let bools: Vec<bool> = candidates.iter().filter_map(|v| v.as_bool()).collect();
    let texts: Vec<String> = candidates
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(fold(s)),
            Value::Number(n) if context_attribute => Some(n.to_string()),
            Value::Bool(b) if context_attribute => Some(b.to_string()),
            _ => None,
        })
        .collect();

    let any_number = |test: &dyn Fn(f64) -> bool| numbers.iter().any(|x| test(*x));
    let any_text = |values: &[String], test: fn(&str, &str) -> bool| {
        texts.iter().any(|text| values.iter().any(|v| test(text, &fold(v))))
    };
    let in_ranges = |ranges: &[[f64; 2]]| any_number(&|x| ranges.iter().any(|[lo, hi]| *lo <= x && x <= *hi));

    match &filter.condition {
        NumberIn(values) => any_number(&|x| values.contains(&x)),
        NumberNotIn(values) => !any_number(&|x| values.contains(&x)),
        NumberLessThan(bound) => any_number(&|x| x < *bound),
        NumberGreaterThan(bound) => any_number(&|x| x > *bound),
        NumberLessThanOrEquals(bound) => any_number(&|x| x <= *bound),
        NumberGreaterThanOrEquals(bound) => any_number(&|x| x >= *bound),
        NumberInRange(ranges) => in_ranges(ranges),
        NumberNotInRange(ranges) => !in_ranges(ranges),
        BoolEquals(expected) => bools.contains(expected),
        StringIn(values) => any_text(values, |t, v| t == v),
        StringNotIn(values) => !any_text(values, |t, v| t == v),
        StringBeginsWith(values) => any_text(values, |t, v| t.starts_with(v)),
        StringNotBeginsWith(values) => !any_text(values, |t, v| t.starts_with(v)),
        StringEndsWith(values) => any_text(values, |t, v| t.ends_with(v)),
        StringNotEndsWith(values) => !any_text(values, |t, v| t.ends_with(v)),
        StringContains(values) => any_text(values, |t, v| t.contains(v)),
        StringNotContains(values) => !any_text(values, |t, v| t.contains(v)),
        IsNullOrUndefined => false,
        IsNotNull => true,
    }
}

// ---------------------------------------------------------------------------------------
// Generators. Small vocabularies, with case variants and non-ASCII letters whose lower
// case is tricky (ß, final sigma, dotted I, Kelvin sign). Keys of the data usually hold
// values of one type, and filters usually test a key with an operator of that type, so
// that matches and near misses are both common; the rest is random.

const COMMON_STRINGS: &[&str] = &["a", "A", "ab", "Ab", "abc", "b"];
const TRICKY_STRINGS: &[&str] = &[
    "", "bc", "xyz", "1", "5", "true", "ß", "SS", "Straße", "ΑΣ", "ας", "İ", "i", "\u{212A}", "k",
];
const NUMBERS: &[f64] = &[-1.0, 0.0, 1.0, 1.5, 10.0];
const TYPES: &[&str] = &["A.B", "a.b", "Other.Type", "x", "All"];
const SUBJECTS: &[&str] = &[
    "",
    "models/churn:3",
    "Models/Churn:3",
    "models/",
    "experiments/e1/runs/r1",
    "EXPERIMENTS/E1/runs/R1",
    "ΑΣΒ",
    "ΑΣ",
    "x/İ",
    "straße/x.JPG",
    "a",
];
const PREFIXES: &[&str] = &[
    "",
    "m",
    "models/",
    "MODELS/",
    "models/churn:",
    "Models/",
    "experiments/",
    "experiments/e1/",
    "ΑΣ",
    "ας",
    "straße",
    "STRASSE",
    "a",
    "x",
];
const SUFFIXES: &[&str] = &[
    "", ":3", "3", "/r1", "/R1", ".jpg", ".JPG", "x.jpg", "Β", "Σ", "ς", "a", "churn:3", "İ",
];

/// `data.n` is listed thrice to be picked more often.
const NUMBER_KEYS: &[&str] = &["data.n", "data.n", "data.n", "data.nested.n", "data.tags", "ext"];
const STRING_KEYS: &[&str] = &[
    "data.a",
    "Data.A",
    "data.a",
    "data.Name",
    "data.nested.a",
    "data.tags",
    "ext",
];
const RARER_STRING_KEYS: &[&str] = &[
    "data.name",
    "data.NAME",
    "data.ünï",
    "data.ÜNÏ",
    "subject",
    "Subject",
    "id",
    "ID",
    "eventType",
    "type",
    "source",
    "EXT",
    "data",
];
const BOOL_KEYS: &[&str] = &["data.b", "flag", "data.tags"];
const OTHER_KEYS: &[&str] = &[
    "data.nested.tags",
    "data.k",
    "data.missing",
    "data",
    "data.nested",
    "flag",
];

fn string() -> impl Strategy<Value = &'static str> + Clone {
    prop_oneof![3 => select(COMMON_STRINGS), 1 => select(TRICKY_STRINGS)]
}

fn number() -> impl Strategy<Value = f64> + Clone {
    select(NUMBERS)
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number().prop_map(|x| if x.fract() == 0.0 { json!(x as i64) } else { json!(x) }),
        3 => string().prop_map(|s| json!(s)),
    ]
    .boxed()
}

/// Mostly scalars, sometimes arrays of scalars, arrays of anything, objects.
fn json_value() -> BoxedStrategy<Value> {
    let nested = leaf().prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((select(&["a", "n", "A"][..]), inner), 0..3)
                .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    });
    prop_oneof![
        6 => leaf(),
        2 => prop::collection::vec(leaf(), 0..4).prop_map(Value::Array),
        1 => nested,
    ]
    .boxed()
}

/// A value that is usually of the type `typical` makes.
fn usually(typical: impl Strategy<Value = Value> + Clone) -> impl Strategy<Value = Value> + Clone {
    prop_oneof![3 => typical, 1 => json_value()]
}

/// The data object, or a nested one: each key more often present than not.
fn data_object() -> BoxedStrategy<Map<String, Value>> {
    let text = || usually(string().prop_map(|s| json!(s)));
    let entries = (
        prop::option::weighted(0.7, text()),
        prop::option::weighted(0.7, usually(number().prop_map(|x| json!(x)))),
        prop::option::weighted(0.7, usually(any::<bool>().prop_map(Value::Bool))),
        prop::option::weighted(0.7, usually(prop::collection::vec(leaf(), 0..4).prop_map(Value::Array))),
        prop::option::weighted(0.3, text()),
        prop::option::weighted(0.3, text()),
        prop::option::weighted(0.3, text()),
        prop::option::weighted(0.2, json_value()),
    );
    entries
        .prop_map(|(a, n, b, tags, name_upper, name, unicode, k)| {
            [
                ("a", a),
                ("n", n),
                ("b", b),
                ("tags", tags),
                ("Name", name_upper),
                ("name", name),
                ("ünï", unicode),
                ("K", k),
            ]
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_owned(), value?)))
            .collect()
        })
        .boxed()
}

/// The data of an event: usually an object with a nested object, sometimes any value.
fn data() -> BoxedStrategy<Value> {
    let object = (data_object(), data_object(), any::<bool>()).prop_map(|(mut outer, inner, nest)| {
        if nest {
            outer.insert("nested".into(), Value::Object(inner));
        }
        Value::Object(outer)
    });
    prop_oneof![6 => object, 1 => json_value()].boxed()
}

fn schema() -> impl Strategy<Value = EventSchema> {
    prop_oneof![
        Just(EventSchema::EventGridSchema),
        Just(EventSchema::CloudEventSchemaV1_0)
    ]
}

/// An event of `schema`, with an extension-like `ext` and `flag` at the top level.
fn event(schema: EventSchema) -> impl Strategy<Value = Value> {
    (
        select(TYPES),
        prop::option::weighted(0.9, select(SUBJECTS)),
        select(&["ID-1", "id-1", "other"][..]),
        data(),
        prop::option::of(leaf()),
        prop::option::of(leaf()),
    )
        .prop_map(move |(event_type, subject, id, data, ext, flag)| {
            let mut event = match schema {
                EventSchema::EventGridSchema => json!({
                    "topic": "/topics/t", "eventType": event_type, "eventTime": "2026-11-26T16:00:00.0000000Z",
                    "id": id, "dataVersion": "1.0", "metadataVersion": "1"
                }),
                EventSchema::CloudEventSchemaV1_0 => json!({
                    "specversion": "1.0", "type": event_type, "source": "/Source/A", "id": id
                }),
            };
            let object = event.as_object_mut().unwrap();
            if let Some(subject) = subject {
                object.insert("subject".into(), subject.into());
            }
            object.insert("data".into(), data);
            if let Some(ext) = ext {
                object.insert("ext".into(), ext);
            }
            if let Some(flag) = flag {
                object.insert("flag".into(), flag);
            }
            event
        })
}

fn schema_and_event() -> impl Strategy<Value = (EventSchema, Value)> {
    schema().prop_flat_map(|schema| event(schema).prop_map(move |e| (schema, e)))
}

fn number_condition() -> BoxedStrategy<Condition> {
    let numbers = || prop::collection::vec(number(), 1..3);
    let ranges = || prop::collection::vec((number(), number()).prop_map(|(a, b)| [a.min(b), a.max(b)]), 1..3);
    prop_oneof![
        numbers().prop_map(Condition::NumberIn),
        numbers().prop_map(Condition::NumberNotIn),
        number().prop_map(Condition::NumberLessThan),
        number().prop_map(Condition::NumberGreaterThan),
        number().prop_map(Condition::NumberLessThanOrEquals),
        number().prop_map(Condition::NumberGreaterThanOrEquals),
        ranges().prop_map(Condition::NumberInRange),
        ranges().prop_map(Condition::NumberNotInRange),
    ]
    .boxed()
}

fn string_condition() -> BoxedStrategy<Condition> {
    let strings = || prop::collection::vec(string().prop_map(str::to_owned), 1..3);
    prop_oneof![
        strings().prop_map(Condition::StringIn),
        strings().prop_map(Condition::StringNotIn),
        strings().prop_map(Condition::StringBeginsWith),
        strings().prop_map(Condition::StringNotBeginsWith),
        strings().prop_map(Condition::StringEndsWith),
        strings().prop_map(Condition::StringNotEndsWith),
        strings().prop_map(Condition::StringContains),
        strings().prop_map(Condition::StringNotContains),
    ]
    .boxed()
}

fn any_key() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        select(NUMBER_KEYS),
        select(STRING_KEYS),
        select(RARER_STRING_KEYS),
        select(BOOL_KEYS),
        select(OTHER_KEYS)
    ]
}

/// An advanced filter, usually on a key that tends to hold a value of its operator's type.
fn advanced_filter() -> BoxedStrategy<AdvancedFilter> {
    let typed = |keys: &'static [&'static str]| prop_oneof![3 => select(keys), 1 => any_key()];
    prop_oneof![
        8 => (typed(NUMBER_KEYS), number_condition()),
        6 => (typed(STRING_KEYS), string_condition()),
        2 => (select(RARER_STRING_KEYS), string_condition()),
        1 => (typed(BOOL_KEYS), any::<bool>().prop_map(Condition::BoolEquals)),
        1 => (any_key(), Just(Condition::IsNullOrUndefined)),
        1 => (any_key(), Just(Condition::IsNotNull)),
    ]
    .prop_map(|(key, condition)| AdvancedFilter {
        key: key.to_owned(),
        condition,
    })
    .boxed()
}

fn event_filter() -> BoxedStrategy<EventFilter> {
    (
        prop::option::weighted(0.5, prop::collection::vec(select(TYPES).prop_map(str::to_owned), 1..3)),
        prop::option::weighted(0.5, select(PREFIXES).prop_map(str::to_owned)),
        prop::option::weighted(0.3, select(SUFFIXES).prop_map(str::to_owned)),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(advanced_filter(), 0..4),
    )
        .prop_map(
            |(included_event_types, subject_begins_with, subject_ends_with, case_sensitive, arrays, advanced)| {
                EventFilter {
                    included_event_types,
                    subject_begins_with,
                    subject_ends_with,
                    is_subject_case_sensitive: case_sensitive,
                    enable_advanced_filtering_on_arrays: arrays,
                    advanced_filters: advanced,
                }
            },
        )
        .boxed()
}

// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn compiled_filters_agree_with_the_reference(filter in event_filter(), (schema, event) in schema_and_event()) {
        let compiled = CompiledFilter::new(&filter).expect("generated filters are valid");
        let view = EventView::new(schema, &event);
        prop_assert_eq!(compiled.matches(&view), reference_matches(&filter, schema, &event));
    }

    #[test]
    fn filters_read_back_as_they_were_written(filter in event_filter()) {
        let json = serde_json::to_value(&filter).unwrap();
        let read: EventFilter = serde_json::from_value(json).unwrap();
        prop_assert_eq!(read, filter);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn a_single_advanced_filter_agrees_with_the_reference(
        advanced in advanced_filter(),
        arrays in any::<bool>(),
        (schema, event) in schema_and_event(),
    ) {
        // Without type and subject conditions, so that every case exercises the operator.
        let filter = EventFilter {
            enable_advanced_filtering_on_arrays: arrays,
            advanced_filters: vec![advanced],
            ..EventFilter::default()
        };
        let compiled = CompiledFilter::new(&filter).expect("generated filters are valid");
        prop_assert_eq!(
            compiled.matches(&EventView::new(schema, &event)),
            reference_matches(&filter, schema, &event)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn routing_finds_exactly_the_matching_subscriptions(
        filters in prop::collection::vec(event_filter(), 0..60),
        removed in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        events in prop::collection::vec(schema_and_event(), 1..10),
    ) {
        let mut table = RoutingTable::new();
        let mut live: Vec<Option<CompiledFilter>> = Vec::new();
        for (key, filter) in filters.iter().enumerate() {
            table.insert(key, filter).expect("generated filters are valid");
            live.push(Some(CompiledFilter::new(filter).unwrap()));
        }
        if !filters.is_empty() {
            for index in removed {
                let key = index.index(filters.len());
                prop_assert_eq!(table.remove(&key), live[key].is_some());
                live[key] = None;
            }
            // Re-inserting under a live key replaces; under a removed key reuses a slot.
            let key = filters.len() / 2;
            table.insert(key, &filters[0]).unwrap();
            live[key] = Some(CompiledFilter::new(&filters[0]).unwrap());
        }
        prop_assert_eq!(table.len(), live.iter().flatten().count());

        for (schema, event) in &events {
            let view = EventView::new(*schema, event);
            let mut routed = Vec::new();
            table.route(&view, &mut routed);
            let expected: Vec<usize> = live
                .iter()
                .enumerate()
                .filter(|(_, f)| f.as_ref().is_some_and(|f| f.matches(&view)))
                .map(|(key, _)| key)
                .collect();
            prop_assert_eq!(routed, expected);
        }
    }
}
