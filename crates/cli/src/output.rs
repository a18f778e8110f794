//! Printing results: pretty JSON by default, tables for people (`--output table`).

use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

use crate::args::Output;

pub fn print(value: &Value, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).expect("a JSON value serialises")
        ),
        Output::Table => println!("{}", table(value)),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Lists of objects become one row per object (columns from the first object);
/// an object becomes rows of key and value.
fn table(value: &Value) -> Table {
    let mut table = Table::new();
    table.set_content_arrangement(ContentArrangement::Dynamic);
    match value {
        Value::Array(items) => {
            let columns: Vec<String> = items
                .first()
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            table.set_header(columns.clone());
            for item in items {
                table.add_row(columns.iter().map(|c| cell(&item[c])).collect::<Vec<_>>());
            }
        }
        Value::Object(map) => {
            table.set_header(["property", "value"]);
            for (key, value) in map {
                table.add_row([key.clone(), cell(value)]);
            }
        }
        other => {
            table.add_row([cell(other)]);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_become_rows_with_columns_from_the_first_item() {
        let rendered = table(&json!([{"name": "a", "n": 1}, {"name": "b", "n": null}])).to_string();
        assert!(
            rendered.contains("name") && rendered.contains(" a ") && rendered.contains(" b "),
            "{rendered}"
        );
    }

    #[test]
    fn objects_become_property_rows() {
        let rendered = table(&json!({"key1": "k", "nested": {"x": 1}})).to_string();
        assert!(
            rendered.contains("key1") && rendered.contains(r#"{"x":1}"#),
            "{rendered}"
        );
    }
}
