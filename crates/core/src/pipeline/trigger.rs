//! Parameter templates of a pipeline trigger (an event subscription whose destination
//! submits a pipeline): `${subject}`, `${data.ModelName}`, `${data.a.b}`, read from the
//! event as it was published (Event Grid or CloudEvents schema), around literal text.
//!
//! A value taken from an event is data, never code: it is one parameter value, checked
//! against the parameter's type, and shell-quoted wherever a step's script uses it.

use std::fmt;

use serde_json::Value;

/// One part of a trigger template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A dotted path into the event, e.g. `["data", "ModelName"]`.
    Field(Vec<String>),
}

/// A parameter template, checked when the subscription is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerTemplate {
    parts: Vec<Part>,
}

/// A template that cannot be rendered for an event: the event lacks a field it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event has no `{field}`, which the template `{template}` needs")]
pub struct MissingField {
    pub field: String,
    pub template: String,
}

impl fmt::Display for TriggerTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(text)?,
                Part::Field(path) => write!(f, "${{{}}}", path.join("."))?,
            }
        }
        Ok(())
    }
}

impl TriggerTemplate {
    /// Reads a template; an unclosed `${` or a field that is not a dotted path of names
    /// is an error saying so.
    pub fn parse(text: &str) -> Result<TriggerTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("`{text}` opens `${{` without closing it with `}}`"))?;
            let field = &after[..end];
            let path: Vec<String> = field.split('.').map(str::to_owned).collect();
            let valid = path.iter().all(|segment| {
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if !valid {
                return Err(format!(
                    "`${{{field}}}` in `{text}` is not an event field: use a dotted path such as \
                     ${{subject}} or ${{data.ModelName}}"
                ));
            }
            parts.push(Part::Field(path));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(TriggerTemplate { parts })
    }

    /// The template with the event's fields in place. A template that is exactly one
    /// field keeps the field's JSON value (a number stays a number); otherwise the result
    /// is a string, with strings inserted as they are and other values as JSON text.
    pub fn render(&self, event: &Value) -> Result<Value, MissingField> {
        let lookup = |path: &[String]| -> Result<&Value, MissingField> {
            path.iter()
                .try_fold(event, |value, segment| value.get(segment.as_str()))
                .filter(|value| !value.is_null())
                .ok_or_else(|| MissingField {
                    field: path.join("."),
                    template: self.to_string(),
                })
        };
        if let [Part::Field(path)] = self.parts.as_slice() {
            return lookup(path).cloned();
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(path) => match lookup(path)? {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> Value {
        json!({
            "id": "e1",
            "subject": "models/diabetes/versions/3",
            "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
            "data": {"ModelName": "diabetes", "ModelVersion": 3, "ModelTags": {"stage": "prod"}}
        })
    }

    #[test]
    fn fields_are_read_from_the_event() {
        let render = |t: &str| TriggerTemplate::parse(t).unwrap().render(&event()).unwrap();
        assert_eq!(render("${data.ModelName}"), json!("diabetes"));
        assert_eq!(render("${data.ModelVersion}"), json!(3), "a lone field keeps its type");
        assert_eq!(render("v${data.ModelVersion}"), json!("v3"));
        assert_eq!(
            render("${data.ModelTags.stage}-${subject}"),
            json!("prod-models/diabetes/versions/3")
        );
        assert_eq!(render("plain"), json!("plain"));
    }

    #[test]
    fn a_missing_field_is_named() {
        let template = TriggerTemplate::parse("${data.Missing}").unwrap();
        let error = template.render(&event()).unwrap_err();
        assert_eq!(error.field, "data.Missing");
        assert!(error.to_string().contains("has no `data.Missing`"), "{error}");
    }

    #[test]
    fn hostile_values_stay_data() {
        let hostile = json!({"data": {"ModelName": "x\"; touch \"$HOME/pwned\"; echo \""}});
        let rendered = TriggerTemplate::parse("${data.ModelName}")
            .unwrap()
            .render(&hostile)
            .unwrap();
        assert_eq!(rendered, json!("x\"; touch \"$HOME/pwned\"; echo \""));
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(
            TriggerTemplate::parse("${data.ModelName")
                .unwrap_err()
                .contains("without closing")
        );
        assert!(
            TriggerTemplate::parse("${data..x}")
                .unwrap_err()
                .contains("not an event field")
        );
        assert!(
            TriggerTemplate::parse("${$(id)}")
                .unwrap_err()
                .contains("not an event field")
        );
        assert_eq!(
            TriggerTemplate::parse("a${subject}b").unwrap().to_string(),
            "a${subject}b"
        );
    }
}
