//! Parameter values: checked against their type before anything runs.

use std::fmt;

use serde_json::Value;

use super::definition::ParameterType;

/// A parameter's value, of its declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum ParameterValue {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for ParameterValue {
    /// The text a command or an environment variable gets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParameterValue::String(s) => f.write_str(s),
            ParameterValue::Int(n) => write!(f, "{n}"),
            ParameterValue::Float(x) => write!(f, "{x}"),
            ParameterValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl ParameterValue {
    /// The value as JSON of its type, as a run keeps its assignment.
    pub fn to_json(&self) -> Value {
        match self {
            ParameterValue::String(s) => Value::String(s.clone()),
            ParameterValue::Int(n) => Value::from(*n),
            // Parameter values are finite: `ParameterType::value` refuses the others.
            ParameterValue::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
            ParameterValue::Bool(b) => Value::Bool(*b),
        }
    }
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "string",
            ParameterType::Int => "int",
            ParameterType::Float => "float",
            ParameterType::Bool => "bool",
        }
    }

    /// `value` as this type: a JSON value of the type, or a string that reads as one
    /// (what a command line or Azure ML's `ParameterAssignments` send). An error says what
    /// was expected.
    pub fn value(self, value: &Value) -> Result<ParameterValue, String> {
        let wrong = || format!("expected a {}, got {value}", self.as_str());
        match (self, value) {
            (ParameterType::String, Value::String(s)) => Ok(ParameterValue::String(s.clone())),
            (ParameterType::String, Value::Number(n)) => Ok(ParameterValue::String(n.to_string())),
            (ParameterType::String, Value::Bool(b)) => Ok(ParameterValue::String(b.to_string())),
            (ParameterType::Int, Value::Number(n)) => n.as_i64().map(ParameterValue::Int).ok_or_else(wrong),
            (ParameterType::Int, Value::String(s)) => s.trim().parse().map(ParameterValue::Int).map_err(|_| wrong()),
            (ParameterType::Float, Value::Number(n)) => n.as_f64().map(ParameterValue::Float).ok_or_else(wrong),
            (ParameterType::Float, Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(ParameterValue::Float)
                .ok_or_else(wrong),
            (ParameterType::Bool, Value::Bool(b)) => Ok(ParameterValue::Bool(*b)),
            (ParameterType::Bool, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(ParameterValue::Bool(true)),
                "false" => Ok(ParameterValue::Bool(false)),
                _ => Err(wrong()),
            },
            _ => Err(wrong()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_read_as_their_type_or_refused() {
        assert_eq!(ParameterType::Int.value(&json!(3)).unwrap(), ParameterValue::Int(3));
        assert_eq!(ParameterType::Int.value(&json!("42")).unwrap(), ParameterValue::Int(42));
        assert!(
            ParameterType::Int
                .value(&json!(2.5))
                .unwrap_err()
                .contains("expected a int")
        );
        assert!(ParameterType::Int.value(&json!("x; rm -rf /")).is_err());
        assert_eq!(
            ParameterType::Float.value(&json!("0.5")).unwrap(),
            ParameterValue::Float(0.5)
        );
        assert!(ParameterType::Float.value(&json!("NaN")).is_err());
        assert_eq!(
            ParameterType::Bool.value(&json!("True")).unwrap(),
            ParameterValue::Bool(true)
        );
        assert!(ParameterType::Bool.value(&json!(1)).is_err());
        assert_eq!(
            ParameterType::String.value(&json!(7)).unwrap(),
            ParameterValue::String("7".into())
        );
        assert!(ParameterType::String.value(&json!({"a": 1})).is_err());
        assert_eq!(ParameterValue::Float(3.0).to_string(), "3");
    }
}
