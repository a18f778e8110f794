//! The filter of an event subscription as the ARM API writes it, read strictly, and its
//! limits.
//!
//! Reading goes through a loose wire form (any JSON in `value` and `values`) so that a
//! mistake is reported with the filter's index, operator and key and what to write instead,
//! rather than as serde's "data did not match any variant".

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Advanced filters one subscription may have (Event Grid: 25).
pub const MAX_ADVANCED_FILTERS: usize = 25;

/// Filter values one subscription may have, counted across all its advanced filters
/// (Event Grid: 25). A `[low, high]` range counts as one value.
pub const MAX_FILTER_VALUES: usize = 25;

/// Characters one string value of an advanced filter may have (Event Grid: 512).
pub const MAX_STRING_VALUE_CHARS: usize = 512;

/// Dot-separated segments one key may have, `data` included (mlgrid's bound: Event Grid
/// documents none since it lifted its early two-level limit).
pub const MAX_KEY_SEGMENTS: usize = 10;

/// The `filter` of an event subscription.
///
/// Deserialising checks the shape (known operators, the right kind of value for each) and
/// names the filter at fault; [`Self::validate`] checks the limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "EventFilterWire")]
pub struct EventFilter {
    /// The event types to deliver; `None` (or a list holding `All`) delivers every type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included_event_types: Option<Vec<String>>,
    /// A prefix the subject must have; empty means no condition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_begins_with: Option<String>,
    /// A suffix the subject must have; empty means no condition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_ends_with: Option<String>,
    /// Whether the two subject conditions compare case-sensitively.
    pub is_subject_case_sensitive: bool,
    /// Whether an array-valued key is matched element by element.
    pub enable_advanced_filtering_on_arrays: bool,
    /// Conditions on the event's fields, all of which must hold.
    pub advanced_filters: Vec<AdvancedFilter>,
}

/// What the ARM API accepts; `null` counts as absent everywhere, as ARM clients send it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventFilterWire {
    #[serde(default)]
    included_event_types: Option<Vec<String>>,
    #[serde(default)]
    subject_begins_with: Option<String>,
    #[serde(default)]
    subject_ends_with: Option<String>,
    #[serde(default)]
    is_subject_case_sensitive: Option<bool>,
    #[serde(default)]
    enable_advanced_filtering_on_arrays: Option<bool>,
    #[serde(default)]
    advanced_filters: Option<Vec<Value>>,
}

impl TryFrom<EventFilterWire> for EventFilter {
    type Error = String;

    fn try_from(wire: EventFilterWire) -> Result<Self, Self::Error> {
        let advanced_filters = wire
            .advanced_filters
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, filter)| AdvancedFilter::from_json(&format!("advancedFilters[{index}]"), filter))
            .collect::<Result<_, _>>()?;
        Ok(EventFilter {
            included_event_types: wire.included_event_types,
            subject_begins_with: wire.subject_begins_with,
            subject_ends_with: wire.subject_ends_with,
            is_subject_case_sensitive: wire.is_subject_case_sensitive.unwrap_or(false),
            enable_advanced_filtering_on_arrays: wire.enable_advanced_filtering_on_arrays.unwrap_or(false),
            advanced_filters,
        })
    }
}

impl EventFilter {
    /// Reads a filter from JSON and validates it: the one call a request handler needs.
    pub fn from_json(json: &Value) -> Result<EventFilter, FilterError> {
        let filter = EventFilter::deserialize(json).map_err(|e| FilterError::Malformed(e.to_string()))?;
        filter.validate()?;
        Ok(filter)
    }

    /// Checks Event Grid's limits and the rules a well-formed filter keeps.
    pub fn validate(&self) -> Result<(), FilterError> {
        if let Some(types) = &self.included_event_types {
            if types.is_empty() {
                return Err(FilterError::NoEventTypes);
            }
            if let Some(index) = types.iter().position(|t| t.trim().is_empty()) {
                return Err(FilterError::EmptyEventType { index });
            }
        }
        let count = self.advanced_filters.len();
        if count > MAX_ADVANCED_FILTERS {
            return Err(FilterError::TooManyAdvancedFilters { count });
        }
        let count = self.advanced_filters.iter().map(|f| f.condition.value_count()).sum();
        if count > MAX_FILTER_VALUES {
            return Err(FilterError::TooManyValues { count });
        }
        for (index, filter) in self.advanced_filters.iter().enumerate() {
            filter.check().map_err(|problem| FilterError::InvalidAdvancedFilter {
                index,
                operator: filter.condition.operator_type(),
                key: filter.key.clone(),
                problem,
            })?;
        }
        Ok(())
    }
}

/// Why a filter was refused. Messages say what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// The JSON is not the shape of a filter (from [`EventFilter::from_json`]).
    #[error("{0}")]
    Malformed(String),
    #[error(
        "includedEventTypes is an empty list, so no event would match; \
         omit it (or set it to null) to receive every event type"
    )]
    NoEventTypes,
    #[error(
        "includedEventTypes[{index}] is empty; give an event type such as Microsoft.MachineLearningServices.RunCompleted"
    )]
    EmptyEventType { index: usize },
    #[error("a subscription may have at most {MAX_ADVANCED_FILTERS} advanced filters; this one has {count}")]
    TooManyAdvancedFilters { count: usize },
    #[error(
        "a subscription may have at most {MAX_FILTER_VALUES} advanced filter values across all its filters \
         (a [low, high] range counts as one); this one has {count}"
    )]
    TooManyValues { count: usize },
    #[error("advancedFilters[{index}] ({operator} on {key}): {problem}")]
    InvalidAdvancedFilter {
        index: usize,
        operator: OperatorType,
        key: String,
        problem: String,
    },
}

/// One advanced filter: a condition on the value found at `key`.
///
/// On the wire: `{"operatorType": "NumberIn", "key": "data.size", "values": [1, 2]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdvancedFilter {
    /// Dot-separated path: an envelope attribute (`subject`, `id`, ...) or `data.a.b`.
    pub key: String,
    pub condition: Condition,
}

/// An operator with its values. Numbers are finite; ranges are inclusive `[low, high]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    NumberIn(Vec<f64>),
    NumberNotIn(Vec<f64>),
    NumberLessThan(f64),
    NumberGreaterThan(f64),
    NumberLessThanOrEquals(f64),
    NumberGreaterThanOrEquals(f64),
    NumberInRange(Vec<[f64; 2]>),
    NumberNotInRange(Vec<[f64; 2]>),
    BoolEquals(bool),
    StringIn(Vec<String>),
    StringNotIn(Vec<String>),
    StringBeginsWith(Vec<String>),
    StringNotBeginsWith(Vec<String>),
    StringEndsWith(Vec<String>),
    StringNotEndsWith(Vec<String>),
    StringContains(Vec<String>),
    StringNotContains(Vec<String>),
    IsNullOrUndefined,
    IsNotNull,
}

/// The `operatorType` of an advanced filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorType {
    NumberIn,
    NumberNotIn,
    NumberLessThan,
    NumberGreaterThan,
    NumberLessThanOrEquals,
    NumberGreaterThanOrEquals,
    NumberInRange,
    NumberNotInRange,
    BoolEquals,
    StringIn,
    StringNotIn,
    StringBeginsWith,
    StringNotBeginsWith,
    StringEndsWith,
    StringNotEndsWith,
    StringContains,
    StringNotContains,
    IsNullOrUndefined,
    IsNotNull,
}

impl OperatorType {
    pub const ALL: [OperatorType; 19] = [
        OperatorType::NumberIn,
        OperatorType::NumberNotIn,
        OperatorType::NumberLessThan,
        OperatorType::NumberGreaterThan,
        OperatorType::NumberLessThanOrEquals,
        OperatorType::NumberGreaterThanOrEquals,
        OperatorType::NumberInRange,
        OperatorType::NumberNotInRange,
        OperatorType::BoolEquals,
        OperatorType::StringIn,
        OperatorType::StringNotIn,
        OperatorType::StringBeginsWith,
        OperatorType::StringNotBeginsWith,
        OperatorType::StringEndsWith,
        OperatorType::StringNotEndsWith,
        OperatorType::StringContains,
        OperatorType::StringNotContains,
        OperatorType::IsNullOrUndefined,
        OperatorType::IsNotNull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperatorType::NumberIn => "NumberIn",
            OperatorType::NumberNotIn => "NumberNotIn",
            OperatorType::NumberLessThan => "NumberLessThan",
            OperatorType::NumberGreaterThan => "NumberGreaterThan",
            OperatorType::NumberLessThanOrEquals => "NumberLessThanOrEquals",
            OperatorType::NumberGreaterThanOrEquals => "NumberGreaterThanOrEquals",
            OperatorType::NumberInRange => "NumberInRange",
            OperatorType::NumberNotInRange => "NumberNotInRange",
            OperatorType::BoolEquals => "BoolEquals",
            OperatorType::StringIn => "StringIn",
            OperatorType::StringNotIn => "StringNotIn",
            OperatorType::StringBeginsWith => "StringBeginsWith",
            OperatorType::StringNotBeginsWith => "StringNotBeginsWith",
            OperatorType::StringEndsWith => "StringEndsWith",
            OperatorType::StringNotEndsWith => "StringNotEndsWith",
            OperatorType::StringContains => "StringContains",
            OperatorType::StringNotContains => "StringNotContains",
            OperatorType::IsNullOrUndefined => "IsNullOrUndefined",
            OperatorType::IsNotNull => "IsNotNull",
        }
    }
}

impl fmt::Display for OperatorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperatorType {
    type Err = UnknownOperator;

    /// Operator names compare case-insensitively, as ARM compares enum values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperatorType::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownOperator(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown operatorType `{0}`; expected one of {list}", list = OperatorType::ALL.map(|op| op.as_str()).join(", "))]
pub struct UnknownOperator(pub String);

impl Condition {
    pub fn operator_type(&self) -> OperatorType {
        match self {
            Condition::NumberIn(_) => OperatorType::NumberIn,
            Condition::NumberNotIn(_) => OperatorType::NumberNotIn,
            Condition::NumberLessThan(_) => OperatorType::NumberLessThan,
            Condition::NumberGreaterThan(_) => OperatorType::NumberGreaterThan,
            Condition::NumberLessThanOrEquals(_) => OperatorType::NumberLessThanOrEquals,
            Condition::NumberGreaterThanOrEquals(_) => OperatorType::NumberGreaterThanOrEquals,
            Condition::NumberInRange(_) => OperatorType::NumberInRange,
            Condition::NumberNotInRange(_) => OperatorType::NumberNotInRange,
            Condition::BoolEquals(_) => OperatorType::BoolEquals,
            Condition::StringIn(_) => OperatorType::StringIn,
            Condition::StringNotIn(_) => OperatorType::StringNotIn,
            Condition::StringBeginsWith(_) => OperatorType::StringBeginsWith,
            Condition::StringNotBeginsWith(_) => OperatorType::StringNotBeginsWith,
            Condition::StringEndsWith(_) => OperatorType::StringEndsWith,
            Condition::StringNotEndsWith(_) => OperatorType::StringNotEndsWith,
            Condition::StringContains(_) => OperatorType::StringContains,
            Condition::StringNotContains(_) => OperatorType::StringNotContains,
            Condition::IsNullOrUndefined => OperatorType::IsNullOrUndefined,
            Condition::IsNotNull => OperatorType::IsNotNull,
        }
    }

    /// How many values this condition counts towards [`MAX_FILTER_VALUES`].
    pub fn value_count(&self) -> usize {
        match self {
            Condition::NumberIn(v) | Condition::NumberNotIn(v) => v.len(),
            Condition::NumberInRange(r) | Condition::NumberNotInRange(r) => r.len(),
            Condition::StringIn(v)
            | Condition::StringNotIn(v)
            | Condition::StringBeginsWith(v)
            | Condition::StringNotBeginsWith(v)
            | Condition::StringEndsWith(v)
            | Condition::StringNotEndsWith(v)
            | Condition::StringContains(v)
            | Condition::StringNotContains(v) => v.len(),
            Condition::NumberLessThan(_)
            | Condition::NumberGreaterThan(_)
            | Condition::NumberLessThanOrEquals(_)
            | Condition::NumberGreaterThanOrEquals(_)
            | Condition::BoolEquals(_) => 1,
            Condition::IsNullOrUndefined | Condition::IsNotNull => 0,
        }
    }
}

impl AdvancedFilter {
    /// Reads one advanced filter; errors start with `location`, e.g. `advancedFilters[2]`.
    fn from_json(location: &str, json: &Value) -> Result<AdvancedFilter, String> {
        let Value::Object(map) = json else {
            return Err(format!(
                "{location} must be an object with operatorType, key, and value or values; got {}",
                describe(json)
            ));
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !["operatorType", "key", "value", "values"].contains(&k.as_str()))
        {
            return Err(format!(
                "{location}: unknown property `{unknown}`; an advanced filter has operatorType, key, and value or values"
            ));
        }
        let operator: OperatorType = required_string(location, map, "operatorType", "an operator such as StringIn")?
            .parse()
            .map_err(|e: UnknownOperator| format!("{location}: {e}"))?;
        let key = required_string(
            &format!("{location} ({operator})"),
            map,
            "key",
            "the field to filter on, such as data.key1 or subject",
        )?;
        let context = format!("{location} ({operator} on {key})");
        let value = map.get("value").filter(|v| !v.is_null());
        let values = map.get("values").filter(|v| !v.is_null());
        let args = Args {
            context: &context,
            value,
            values,
        };
        let condition = match operator {
            OperatorType::NumberIn => Condition::NumberIn(args.numbers()?),
            OperatorType::NumberNotIn => Condition::NumberNotIn(args.numbers()?),
            OperatorType::NumberLessThan => Condition::NumberLessThan(args.number()?),
            OperatorType::NumberGreaterThan => Condition::NumberGreaterThan(args.number()?),
            OperatorType::NumberLessThanOrEquals => Condition::NumberLessThanOrEquals(args.number()?),
            OperatorType::NumberGreaterThanOrEquals => Condition::NumberGreaterThanOrEquals(args.number()?),
            OperatorType::NumberInRange => Condition::NumberInRange(args.ranges()?),
            OperatorType::NumberNotInRange => Condition::NumberNotInRange(args.ranges()?),
            OperatorType::BoolEquals => Condition::BoolEquals(args.boolean()?),
            OperatorType::StringIn => Condition::StringIn(args.strings()?),
            OperatorType::StringNotIn => Condition::StringNotIn(args.strings()?),
            OperatorType::StringBeginsWith => Condition::StringBeginsWith(args.strings()?),
            OperatorType::StringNotBeginsWith => Condition::StringNotBeginsWith(args.strings()?),
            OperatorType::StringEndsWith => Condition::StringEndsWith(args.strings()?),
            OperatorType::StringNotEndsWith => Condition::StringNotEndsWith(args.strings()?),
            OperatorType::StringContains => Condition::StringContains(args.strings()?),
            OperatorType::StringNotContains => Condition::StringNotContains(args.strings()?),
            OperatorType::IsNullOrUndefined => {
                args.nothing()?;
                Condition::IsNullOrUndefined
            }
            OperatorType::IsNotNull => {
                args.nothing()?;
                Condition::IsNotNull
            }
        };
        Ok(AdvancedFilter { key, condition })
    }

    /// The ARM form: `value` for single-value operators, `values` for the others.
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("operatorType".into(), self.condition.operator_type().as_str().into());
        map.insert("key".into(), self.key.clone().into());
        let numbers = |v: &[f64]| Value::Array(v.iter().map(|x| json_number(*x)).collect());
        let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::from(s.as_str())).collect());
        let ranges = |r: &[[f64; 2]]| {
            Value::Array(
                r.iter()
                    .map(|[lo, hi]| Value::Array(vec![json_number(*lo), json_number(*hi)]))
                    .collect(),
            )
        };
        let (name, value) = match &self.condition {
            Condition::NumberIn(v) | Condition::NumberNotIn(v) => ("values", numbers(v)),
            Condition::NumberLessThan(x)
            | Condition::NumberGreaterThan(x)
            | Condition::NumberLessThanOrEquals(x)
            | Condition::NumberGreaterThanOrEquals(x) => ("value", json_number(*x)),
            Condition::NumberInRange(r) | Condition::NumberNotInRange(r) => ("values", ranges(r)),
            Condition::BoolEquals(b) => ("value", Value::Bool(*b)),
            Condition::StringIn(v)
            | Condition::StringNotIn(v)
            | Condition::StringBeginsWith(v)
            | Condition::StringNotBeginsWith(v)
            | Condition::StringEndsWith(v)
            | Condition::StringNotEndsWith(v)
            | Condition::StringContains(v)
            | Condition::StringNotContains(v) => ("values", strings(v)),
            Condition::IsNullOrUndefined | Condition::IsNotNull => return Value::Object(map),
        };
        map.insert(name.into(), value);
        Value::Object(map)
    }

    /// The rules [`EventFilter::validate`] checks for each filter; the error is the problem.
    fn check(&self) -> Result<(), String> {
        check_key(&self.key)?;
        let no_values = || Err("values is empty; give at least one value".to_owned());
        match &self.condition {
            Condition::NumberIn(v) | Condition::NumberNotIn(v) => {
                if v.is_empty() {
                    return no_values();
                }
                check_finite(v.iter())
            }
            Condition::NumberLessThan(x)
            | Condition::NumberGreaterThan(x)
            | Condition::NumberLessThanOrEquals(x)
            | Condition::NumberGreaterThanOrEquals(x) => check_finite([x].into_iter()),
            Condition::NumberInRange(ranges) | Condition::NumberNotInRange(ranges) => {
                if ranges.is_empty() {
                    return no_values();
                }
                check_finite(ranges.iter().flatten())?;
                match ranges.iter().enumerate().find(|(_, [lo, hi])| lo > hi) {
                    Some((i, [lo, hi])) => Err(format!(
                        "values[{i}] is the range [{lo}, {hi}], whose low end is above its high end; write [{hi}, {lo}]"
                    )),
                    None => Ok(()),
                }
            }
            Condition::StringIn(v)
            | Condition::StringNotIn(v)
            | Condition::StringBeginsWith(v)
            | Condition::StringNotBeginsWith(v)
            | Condition::StringEndsWith(v)
            | Condition::StringNotEndsWith(v)
            | Condition::StringContains(v)
            | Condition::StringNotContains(v) => {
                if v.is_empty() {
                    return no_values();
                }
                let too_long = v
                    .iter()
                    .map(|s| s.chars().count())
                    .enumerate()
                    .find(|(_, chars)| *chars > MAX_STRING_VALUE_CHARS);
                match too_long {
                    Some((i, chars)) => Err(format!(
                        "values[{i}] has {chars} characters; a string value may have at most {MAX_STRING_VALUE_CHARS}"
                    )),
                    None => Ok(()),
                }
            }
            Condition::BoolEquals(_) | Condition::IsNullOrUndefined | Condition::IsNotNull => Ok(()),
        }
    }
}

impl Serialize for AdvancedFilter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AdvancedFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Value::deserialize(deserializer)?;
        AdvancedFilter::from_json("advanced filter", &json).map_err(D::Error::custom)
    }
}

/// A key is dot-separated segments, none empty, without whitespace or control characters
/// (no escaping exists, so a property whose name holds a dot cannot be reached).
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty; name a field such as data.key1 or subject".into());
    }
    if let Some(c) = key.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the key contains {:?} (U+{:04X}); keys may not contain whitespace or control characters",
            c, c as u32
        ));
    }
    if key.split('.').any(str::is_empty) {
        return Err(
            "the key has an empty segment; separate property names with single dots, as in data.key1.key2".into(),
        );
    }
    let segments = key.split('.').count();
    if segments > MAX_KEY_SEGMENTS {
        return Err(format!(
            "the key has {segments} segments; at most {MAX_KEY_SEGMENTS} are allowed (data.a.b has 3)"
        ));
    }
    Ok(())
}

fn check_finite<'a>(mut numbers: impl Iterator<Item = &'a f64>) -> Result<(), String> {
    match numbers.find(|x| !x.is_finite()) {
        Some(x) => Err(format!("{x} is not a finite number")),
        None => Ok(()),
    }
}

/// The `value` and `values` of one advanced filter being read, with its context for errors.
struct Args<'a> {
    context: &'a str,
    value: Option<&'a Value>,
    values: Option<&'a Value>,
}

impl<'a> Args<'a> {
    fn one(&self, what: &str) -> Result<&'a Value, String> {
        let context = self.context;
        if self.values.is_some() {
            return Err(format!("{context}: takes one `value` ({what}), not `values`"));
        }
        self.value
            .ok_or_else(|| format!("{context}: value is missing; give {what}"))
    }

    fn many(&self, what: &str) -> Result<&'a Vec<Value>, String> {
        let context = self.context;
        if self.value.is_some() {
            return Err(format!(
                "{context}: takes `values`, an array of {what}; `value` is for single-value operators"
            ));
        }
        match self.values {
            None => Err(format!("{context}: values is missing; give an array of {what}")),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(format!(
                "{context}: values must be an array of {what}, got {}",
                describe(other)
            )),
        }
    }

    fn number(&self) -> Result<f64, String> {
        let value = self.one("a number")?;
        value
            .as_f64()
            .ok_or_else(|| format!("{}: value must be a number, got {}", self.context, show(value)))
    }

    fn numbers(&self) -> Result<Vec<f64>, String> {
        self.many("numbers")?
            .iter()
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| format!("{}: values must be numbers, got {}", self.context, show(v)))
            })
            .collect()
    }

    fn ranges(&self) -> Result<Vec<[f64; 2]>, String> {
        self.many("[low, high] pairs of numbers")?
            .iter()
            .map(|v| match v.as_array().map(Vec::as_slice) {
                Some([lo, hi]) => match (lo.as_f64(), hi.as_f64()) {
                    (Some(lo), Some(hi)) => Ok([lo, hi]),
                    _ => Err(v),
                },
                _ => Err(v),
            })
            .map(|r| {
                r.map_err(|v| {
                    format!(
                        "{}: values must be [low, high] pairs of numbers, such as [[0, 10]]; got {}",
                        self.context,
                        show(v)
                    )
                })
            })
            .collect()
    }

    fn boolean(&self) -> Result<bool, String> {
        let value = self.one("true or false")?;
        value
            .as_bool()
            .ok_or_else(|| format!("{}: value must be true or false, got {}", self.context, show(value)))
    }

    fn strings(&self) -> Result<Vec<String>, String> {
        self.many("strings")?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("{}: values must be strings, got {}", self.context, show(other))),
            })
            .collect()
    }

    fn nothing(&self) -> Result<(), String> {
        match (self.value, self.values) {
            (None, None) => Ok(()),
            (Some(_), _) => Err(format!("{}: takes no value; remove `value`", self.context)),
            (_, Some(_)) => Err(format!("{}: takes no value; remove `values`", self.context)),
        }
    }
}

fn required_string(location: &str, map: &Map<String, Value>, name: &str, what: &str) -> Result<String, String> {
    match map.get(name) {
        None | Some(Value::Null) => Err(format!("{location}: {name} is missing; give {what}")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("{location}: {name} must be a string, got {}", describe(other))),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value as JSON, cut short so that an error message stays one readable line.
fn show(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Integral numbers are written as integers, so that a filter reads back as it was written.
fn json_number(x: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact in f64
    if x.fract() == 0.0 && x.abs() < EXACT {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(json: Value) -> Result<EventFilter, String> {
        serde_json::from_value(json).map_err(|e| e.to_string())
    }

    fn with_filter(filter: Value) -> Result<EventFilter, String> {
        parse(json!({"advancedFilters": [filter]}))
    }

    #[test]
    fn reads_the_arm_shape_and_writes_it_back() {
        let json = json!({
            "includedEventTypes": ["Microsoft.MachineLearningServices.RunCompleted"],
            "subjectBeginsWith": "experiments/",
            "subjectEndsWith": "_5",
            "isSubjectCaseSensitive": true,
            "enableAdvancedFilteringOnArrays": true,
            "advancedFilters": [
                {"operatorType": "NumberIn", "key": "data.n", "values": [1, 2.5]},
                {"operatorType": "NumberLessThan", "key": "data.n", "value": 100},
                {"operatorType": "NumberInRange", "key": "data.n", "values": [[2.5, 999.95], [3000, 4000]]},
                {"operatorType": "BoolEquals", "key": "data.ok", "value": true},
                {"operatorType": "StringNotContains", "key": "subject", "values": ["contoso", "fabrikam"]},
                {"operatorType": "IsNullOrUndefined", "key": "data.gone"}
            ]
        });
        let filter = parse(json.clone()).unwrap();
        assert_eq!(
            filter.advanced_filters[0].condition,
            Condition::NumberIn(vec![1.0, 2.5])
        );
        assert_eq!(
            filter.advanced_filters[2].condition,
            Condition::NumberInRange(vec![[2.5, 999.95], [3000.0, 4000.0]])
        );
        assert_eq!(serde_json::to_value(&filter).unwrap(), json);
        filter.validate().unwrap();
    }

    #[test]
    fn nulls_count_as_absent_and_defaults_apply() {
        let filter = parse(json!({
            "includedEventTypes": null,
            "subjectBeginsWith": null,
            "isSubjectCaseSensitive": null,
            "advancedFilters": null
        }))
        .unwrap();
        assert_eq!(filter, EventFilter::default());
        assert_eq!(parse(json!({})).unwrap(), EventFilter::default());
    }

    #[test]
    fn operator_names_ignore_case_and_unknown_ones_list_the_valid_ones() {
        let filter = with_filter(json!({"operatorType": "stringin", "key": "subject", "values": ["a"]})).unwrap();
        assert_eq!(
            filter.advanced_filters[0].condition,
            Condition::StringIn(vec!["a".into()])
        );
        let err = with_filter(json!({"operatorType": "StringEquals", "key": "subject", "values": ["a"]})).unwrap_err();
        assert!(
            err.starts_with("advancedFilters[0]: unknown operatorType `StringEquals`"),
            "{err}"
        );
        for op in OperatorType::ALL {
            assert!(err.contains(op.as_str()), "{err} should list {op}");
        }
    }

    #[test]
    fn wrong_value_types_name_the_filter_and_what_to_write() {
        let err = parse(json!({"advancedFilters": [
            {"operatorType": "IsNotNull", "key": "data.a"},
            {"operatorType": "IsNotNull", "key": "data.b"},
            {"operatorType": "NumberIn", "key": "data.size", "values": [1, "big"]}
        ]}))
        .unwrap_err();
        assert_eq!(
            err,
            "advancedFilters[2] (NumberIn on data.size): values must be numbers, got \"big\""
        );
        let cases = [
            (
                json!({"operatorType": "NumberLessThan", "key": "data.n", "values": [1]}),
                "advancedFilters[0] (NumberLessThan on data.n): takes one `value` (a number), not `values`",
            ),
            (
                json!({"operatorType": "NumberIn", "key": "data.n", "value": 1}),
                "advancedFilters[0] (NumberIn on data.n): takes `values`, an array of numbers; `value` is for single-value operators",
            ),
            (
                json!({"operatorType": "StringIn", "key": "data.s", "values": "a"}),
                "advancedFilters[0] (StringIn on data.s): values must be an array of strings, got a string",
            ),
            (
                json!({"operatorType": "StringIn", "key": "data.s", "values": ["a", 1]}),
                "advancedFilters[0] (StringIn on data.s): values must be strings, got 1",
            ),
            (
                json!({"operatorType": "BoolEquals", "key": "data.b", "value": "true"}),
                "advancedFilters[0] (BoolEquals on data.b): value must be true or false, got \"true\"",
            ),
            (
                json!({"operatorType": "NumberInRange", "key": "data.n", "values": [1, 2]}),
                "advancedFilters[0] (NumberInRange on data.n): values must be [low, high] pairs of numbers, such as [[0, 10]]; got 1",
            ),
            (
                json!({"operatorType": "IsNotNull", "key": "data.n", "value": 1}),
                "advancedFilters[0] (IsNotNull on data.n): takes no value; remove `value`",
            ),
            (
                json!({"operatorType": "StringIn", "key": "data.s"}),
                "advancedFilters[0] (StringIn on data.s): values is missing; give an array of strings",
            ),
            (
                json!({"operatorType": "StringIn", "values": ["a"]}),
                "advancedFilters[0] (StringIn): key is missing; give the field to filter on, such as data.key1 or subject",
            ),
            (
                json!({"key": "data.s", "values": ["a"]}),
                "advancedFilters[0]: operatorType is missing; give an operator such as StringIn",
            ),
            (
                json!({"operatorType": "StringIn", "key": "data.s", "Values": ["a"]}),
                "advancedFilters[0]: unknown property `Values`; an advanced filter has operatorType, key, and value or values",
            ),
            (
                json!("StringIn"),
                "advancedFilters[0] must be an object with operatorType, key, and value or values; got a string",
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(with_filter(filter).unwrap_err(), expected);
        }
    }

    #[test]
    fn unknown_filter_properties_are_refused() {
        let err = parse(json!({"subjectBeginsWith": "a", "subjectStartsWith": "b"})).unwrap_err();
        assert!(err.contains("unknown field `subjectStartsWith`"), "{err}");
        assert!(err.contains("subjectBeginsWith"), "{err}");
    }

    #[test]
    fn long_values_in_messages_are_cut_short() {
        let long = "x".repeat(200);
        let err = with_filter(json!({"operatorType": "NumberIn", "key": "data.n", "values": [long]})).unwrap_err();
        assert!(err.ends_with("...") && err.len() < 150, "{err}");
    }

    fn advanced(key: &str, condition: Condition) -> EventFilter {
        EventFilter {
            advanced_filters: vec![AdvancedFilter {
                key: key.into(),
                condition,
            }],
            ..EventFilter::default()
        }
    }

    fn is_not_null(n: usize) -> Vec<AdvancedFilter> {
        (0..n)
            .map(|i| AdvancedFilter {
                key: format!("data.k{i}"),
                condition: Condition::IsNotNull,
            })
            .collect()
    }

    #[test]
    fn limits_name_the_limit() {
        let at_limit = EventFilter {
            advanced_filters: is_not_null(25),
            ..EventFilter::default()
        };
        at_limit.validate().unwrap();
        let over = EventFilter {
            advanced_filters: is_not_null(26),
            ..EventFilter::default()
        };
        assert_eq!(
            over.validate().unwrap_err().to_string(),
            "a subscription may have at most 25 advanced filters; this one has 26"
        );

        let mut values = EventFilter {
            advanced_filters: vec![
                AdvancedFilter {
                    key: "data.a".into(),
                    condition: Condition::NumberIn((0..20).map(f64::from).collect()),
                },
                AdvancedFilter {
                    key: "data.b".into(),
                    condition: Condition::NumberInRange(vec![[0.0, 1.0]; 5]),
                },
            ],
            ..EventFilter::default()
        };
        values.validate().unwrap();
        values.advanced_filters.push(AdvancedFilter {
            key: "data.c".into(),
            condition: Condition::BoolEquals(true),
        });
        assert_eq!(values.validate().unwrap_err(), FilterError::TooManyValues { count: 26 });

        let ok = advanced("data.s", Condition::StringIn(vec!["é".repeat(512)]));
        ok.validate().unwrap();
        let long = advanced("data.s", Condition::StringIn(vec!["a".into(), "é".repeat(513)]));
        assert_eq!(
            long.validate().unwrap_err().to_string(),
            "advancedFilters[0] (StringIn on data.s): values[1] has 513 characters; a string value may have at most 512"
        );
    }

    #[test]
    fn keys_must_be_well_formed() {
        for (key, problem) in [
            ("", "the key is empty"),
            ("data..a", "empty segment"),
            (".data", "empty segment"),
            ("data.", "empty segment"),
            ("data. a", "whitespace"),
            ("data.a\u{1}", "control"),
            ("data.a.b.c.d.e.f.g.h.i.j", "11 segments; at most 10"),
        ] {
            let err = advanced(key, Condition::IsNotNull).validate().unwrap_err().to_string();
            assert!(err.contains(problem), "{key:?}: {err}");
        }
        advanced("data.a.b.c.d.e.f.g.h.i", Condition::IsNotNull)
            .validate()
            .unwrap();
        advanced("Data.Key-1_é:x", Condition::IsNotNull).validate().unwrap();
    }

    #[test]
    fn values_and_ranges_must_make_sense() {
        let err = advanced("data.n", Condition::NumberInRange(vec![[0.0, 1.0], [5.0, 3.0]]))
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "advancedFilters[0] (NumberInRange on data.n): values[1] is the range [5, 3], whose low end is above its high end; write [3, 5]"
        );
        advanced("data.n", Condition::NumberInRange(vec![[2.0, 2.0]]))
            .validate()
            .unwrap();
        let err = advanced("data.n", Condition::StringIn(vec![])).validate().unwrap_err();
        assert!(err.to_string().contains("values is empty"), "{err}");
        let err = advanced("data.n", Condition::NumberLessThan(f64::NAN))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("NaN is not a finite number"), "{err}");
    }

    #[test]
    fn event_type_lists_must_name_types() {
        let empty = EventFilter {
            included_event_types: Some(vec![]),
            ..EventFilter::default()
        };
        assert_eq!(empty.validate().unwrap_err(), FilterError::NoEventTypes);
        let blank = EventFilter {
            included_event_types: Some(vec!["A".into(), " ".into()]),
            ..EventFilter::default()
        };
        assert_eq!(blank.validate().unwrap_err(), FilterError::EmptyEventType { index: 1 });
    }

    #[test]
    fn from_json_reads_and_validates() {
        let err =
            EventFilter::from_json(&json!({"advancedFilters": [{"operatorType": "Nope", "key": "k"}]})).unwrap_err();
        assert!(matches!(err, FilterError::Malformed(m) if m.contains("unknown operatorType `Nope`")));
        let err = EventFilter::from_json(&json!({"includedEventTypes": []})).unwrap_err();
        assert_eq!(err, FilterError::NoEventTypes);
        EventFilter::from_json(&json!({"subjectEndsWith": ".jpg"})).unwrap();
    }
}
