//! Tool arguments mirrored into HTTP headers (protocol revision 2026-07-28): a tool's input
//! schema may mark a property with `x-mcp-header: Name`, and a client then sends that
//! argument's value as `Mcp-Param-Name` too, which the server checks against the body. The
//! gateway relays a stateless caller's headers as they are; when it speaks the revision itself
//! on a session-ful caller's behalf it writes them, as such a client would.

use base64::Engine;
use serde_json::Value;

/// One argument a tool wants mirrored: where it is in `arguments`, and the header's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declaration {
    pub path: Vec<String>,
    pub header: String,
}

/// The declarations of one input schema: only along a chain of `properties`, where the
/// revision allows them (the upstream refuses a tool that has others).
pub fn declarations(schema: &Value) -> Vec<Declaration> {
    fn visit(node: &Value, path: &mut Vec<String>, found: &mut Vec<Declaration>) {
        if let (false, Some(header)) = (path.is_empty(), node.get("x-mcp-header").and_then(Value::as_str)) {
            found.push(Declaration { path: path.clone(), header: header.to_owned() });
        }
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                path.push(name.clone());
                visit(child, path, found);
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    visit(schema, &mut Vec::new(), &mut found);
    found
}

/// The `Mcp-Param-*` headers for a call with these `arguments`: one per declared argument that
/// has a string, number or boolean value (null and absent ones are left out).
pub fn headers(declarations: &[Declaration], arguments: &Value) -> Vec<(String, String)> {
    declarations
        .iter()
        .filter_map(|d| {
            let value = d.path.iter().try_fold(arguments, |node, key| node.get(key))?;
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((format!("mcp-param-{}", d.header.to_ascii_lowercase()), encoded(&text)))
        })
        .collect()
}

/// A value as a header carries it: as it is when it is printable ASCII without surrounding
/// whitespace, else as UTF-8 in base64 between the revision's `=?base64?` and `?=`.
fn encoded(text: &str) -> String {
    let plain = text.bytes().all(|b| (0x20..=0x7e).contains(&b)) && text.trim() == text;
    if plain {
        text.to_owned()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declared_arguments_become_headers_encoded_as_the_revision_says() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "priority": {"type": "integer", "x-mcp-header": "Priority"},
            "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
            "greeting": {"type": "string", "x-mcp-header": "Greeting"},
            "padded": {"type": "string", "x-mcp-header": "Padded"},
            "nested": {"type": "object", "properties": {"zone": {"type": "string", "x-mcp-header": "Zone"}}},
            "listed": {"type": "array", "items": {"type": "string", "x-mcp-header": "Ignored"}},
            "query": {"type": "string"}
        }});
        let declared = declarations(&schema);
        assert_eq!(declared.len(), 6, "{declared:?}");
        let arguments = json!({"region": "us-west1", "priority": 42, "verbose": false, "greeting": "Hello, 世界",
            "padded": " x ", "nested": {"zone": "b"}, "listed": ["a"], "query": "SELECT 1"});
        let mut sent = headers(&declared, &arguments);
        sent.sort();
        assert_eq!(
            sent,
            [
                ("mcp-param-greeting".into(), "=?base64?SGVsbG8sIOS4lueVjA==?=".into()),
                ("mcp-param-padded".into(), "=?base64?IHgg?=".into()),
                ("mcp-param-priority".into(), "42".into()),
                ("mcp-param-region".into(), "us-west1".into()),
                ("mcp-param-verbose".into(), "false".into()),
                ("mcp-param-zone".into(), "b".into()),
            ]
        );
        // Null or missing: no header.
        assert!(headers(&declared, &json!({"region": null})).is_empty());
    }
}
