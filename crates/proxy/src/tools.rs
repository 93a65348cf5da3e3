//! Tool settings and the virtual-server merge: which tools a client sees, under what name and
//! description, and where a call goes.

use std::collections::HashMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use mcpgate_policy::ToolSetting;

/// MCP clients commonly refuse tool names longer than this.
pub const MAX_NAME: usize = 64;

/// Applies the server's settings to one listed tool; `false` when the tool is disabled.
pub fn apply_settings(tool: &mut Value, settings: &[ToolSetting]) -> bool {
    let Some(name) = tool.get("name").and_then(Value::as_str) else { return true };
    let Some(setting) = settings.iter().find(|s| s.name == name) else { return true };
    if setting.disabled {
        return false;
    }
    if let Some(description) = &setting.description {
        tool["description"] = Value::String(description.clone());
    }
    if let Some(annotations) = &setting.annotations {
        let mut merged = tool
            .get("annotations")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::Object(Default::default()));
        if let (Some(target), Ok(Value::Object(source))) = (merged.as_object_mut(), serde_json::to_value(annotations)) {
            target.extend(source);
        }
        tool["annotations"] = merged;
    }
    true
}

pub fn is_disabled(name: &str, settings: &[ToolSetting]) -> bool {
    settings.iter().any(|s| s.name == name && s.disabled)
}

/// Keeps only enabled tools of a `tools/list` result and applies the settings to the rest.
pub fn filter_list(result: &mut Value, settings: &[ToolSetting]) {
    if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
        tools.retain_mut(|tool| apply_settings(tool, settings));
    }
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(3).map(|b| format!("{b:02x}")).collect()
}

/// `name` with a suffix, shortened so the whole stays within [`MAX_NAME`].
fn with_suffix(name: &str, suffix: &str) -> String {
    let room = MAX_NAME.saturating_sub(suffix.len());
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &name[..cut])
}

/// The name a member's tool is offered under. Unique names stay as they are; a name offered by
/// several members gets `_<member slug>` (or a short hash of it, for long slugs), which depends
/// only on the name and the member, so it is stable across lists and replicas.
pub fn exposed_name(name: &str, member_slug: &str, collides: bool) -> String {
    if collides {
        let suffix =
            if member_slug.len() <= 16 { format!("_{member_slug}") } else { format!("_{}", short_hash(member_slug)) };
        with_suffix(name, &suffix)
    } else if name.len() > MAX_NAME {
        with_suffix(name, &format!("_{}", short_hash(name)))
    } else {
        name.to_owned()
    }
}

/// One member's tools, as listed by its upstream (already filtered by the member's own settings
/// and the virtual server's allow-list).
pub struct MemberTools<'a> {
    /// The member's position among the virtual server's members.
    pub member: usize,
    pub slug: &'a str,
    pub tools: Vec<Value>,
}

/// Where an offered tool lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub member: usize,
    pub name: String,
}

/// Merges member tool lists in member order. Returns the offered tools (renamed where names
/// collide) and the route of every offered name.
pub fn merge(members: &[MemberTools<'_>]) -> (Vec<Value>, HashMap<String, Route>) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for member in members {
        for tool in &member.tools {
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                *count.entry(name).or_default() += 1;
            }
        }
    }
    let mut merged = Vec::new();
    let mut routes = HashMap::new();
    for member in members {
        for tool in &member.tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else { continue };
            let exposed = exposed_name(name, member.slug, count.get(name).copied().unwrap_or(0) > 1);
            if routes.contains_key(&exposed) {
                // A renamed tool landing on another's name: first come keeps it.
                continue;
            }
            let mut tool = tool.clone();
            tool["name"] = Value::String(exposed.clone());
            routes.insert(exposed, Route { member: member.member, name: name.to_owned() });
            merged.push(tool);
        }
    }
    (merged, routes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tools(names: &[&str]) -> Vec<Value> {
        names.iter().map(|n| json!({"name": n, "description": format!("{n} tool"), "inputSchema": {}})).collect()
    }

    #[test]
    fn colliding_names_get_stable_short_suffixes_and_route_home() {
        let members = [
            MemberTools { member: 0, slug: "github", tools: tools(&["search", "create_issue"]) },
            MemberTools { member: 2, slug: "linear", tools: tools(&["search", "create_ticket"]) },
        ];
        let (merged, routes) = merge(&members);
        let names: Vec<&str> = merged.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["search_github", "create_issue", "search_linear", "create_ticket"]);
        assert_eq!(routes["search_linear"], Route { member: 2, name: "search".into() });
        assert_eq!(routes["create_issue"], Route { member: 0, name: "create_issue".into() });
        assert_eq!(merge(&members).1, routes, "the same lists give the same names");
    }

    #[test]
    fn names_stay_within_64_characters() {
        let long = "a".repeat(70);
        let slug = "a-very-long-member-server-slug";
        let members = [
            MemberTools { member: 0, slug, tools: tools(&[&long, "x"]) },
            MemberTools { member: 1, slug: "b", tools: tools(&[&long]) },
        ];
        let (merged, routes) = merge(&members);
        for tool in &merged {
            assert!(tool["name"].as_str().unwrap().len() <= MAX_NAME, "{}", tool["name"]);
        }
        assert_eq!(routes.len(), 3);
        assert!(routes.values().filter(|r| r.name == long).count() == 2);
        assert_eq!(exposed_name(&"b".repeat(80), "m", false).len(), MAX_NAME);
    }

    #[test]
    fn settings_hide_disabled_tools_and_override_descriptions() {
        let settings: Vec<ToolSetting> = serde_json::from_value(json!([
            {"name": "rm", "disabled": true},
            {"name": "ls", "description": "List files (read only)", "annotations": {"readOnlyHint": true}}
        ]))
        .unwrap();
        let mut result = json!({"tools": tools(&["rm", "ls", "cat"])});
        filter_list(&mut result, &settings);
        let listed = result["tools"].as_array().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0]["description"], "List files (read only)");
        assert_eq!(listed[0]["annotations"]["readOnlyHint"], true);
        assert_eq!(listed[1]["description"], "cat tool");
        assert!(is_disabled("rm", &settings) && !is_disabled("ls", &settings));
    }
}
