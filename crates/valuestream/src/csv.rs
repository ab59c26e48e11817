//! CSV downloads (RFC 4180): a header, then one line per row, CRLF line
//! ends, and a field quoted only when it holds a comma, a quote or a line
//! break.

use serde_json::Value;

/// The CSV of `rows` (each as many fields as `columns`).
pub fn table(columns: &[&str], rows: impl IntoIterator<Item = Vec<Value>>) -> String {
    let mut out = line(columns.iter().map(|c| Value::String(c.to_string())));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn line(fields: impl IntoIterator<Item = Value>) -> String {
    let fields: Vec<String> = fields.into_iter().map(|f| field(&f)).collect();
    fields.join(",") + "\r\n"
}

/// One field: text as it is, numbers and booleans as JSON writes them, null empty.
fn field(value: &Value) -> String {
    let text = match value {
        Value::Null => return String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_quoted_only_when_they_must_be_and_null_is_empty() {
        let csv = table(&["a", "b", "c"], [vec![json!("Deploy \"a, b\""), json!(1.5), Value::Null]]);
        assert_eq!(csv, "a,b,c\r\n\"Deploy \"\"a, b\"\"\",1.5,\r\n");
        assert_eq!(table(&["x"], [vec![json!("two\nlines")]]), "x\r\n\"two\nlines\"\r\n");
    }
}
