//! "How To Use" a server: the exact MCP URL and ready-to-paste setup for the clients people
//! use, each in both ways of connecting (sign in through the browser, or a token in a header).

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// What to put in the `Authorization` header instead of a real token.
pub const TOKEN_PLACEHOLDER: &str = "<YOUR_MCPGATE_TOKEN>";

#[derive(Debug, Serialize, ToSchema)]
pub struct Snippet {
    /// What to do with `content`.
    pub instructions: String,
    /// Where the content goes, when it is a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `json`, `shell`, `python` or `typescript`.
    pub language: String,
    pub content: String,
}

/// One client, both ways to connect.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientSetup {
    /// URL only: the client signs in through the browser (OAuth) on first use.
    pub sign_in: Snippet,
    /// A personal access token or virtual-account token in the `Authorization` header.
    pub api_key: Snippet,
}

/// Something each user does once before the server works for them.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialStep {
    /// The server that needs it (a member, for a virtual server).
    pub server: String,
    /// `key`: enter your own credential; `authorization`: authorize the gateway at the provider.
    pub kind: String,
    /// The page where you do it (sign-in included).
    pub connect_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HowToUse {
    /// The server's MCP endpoint: `<public base URL>/<tenant>/mcp/<server>/server`.
    pub mcp_url: String,
    /// The name used for the server in client configurations.
    pub name: String,
    pub cursor: ClientSetup,
    pub claude_code: ClientSetup,
    pub vscode: ClientSetup,
    /// The official Python SDK, with a token.
    pub python: Snippet,
    /// The official TypeScript SDK, with a token.
    pub typescript: Snippet,
    /// What each user does once before first use: their own key, or their authorization at
    /// the upstream's provider. Empty when nothing is needed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub before_first_use: Vec<CredentialStep>,
}

pub use crate::proxy::routes::mcp_url;

fn pretty(value: serde_json::Value) -> String {
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn snippet(instructions: String, file: Option<&str>, language: &str, content: String) -> Snippet {
    Snippet { instructions, file: file.map(str::to_owned), language: language.to_owned(), content }
}

pub fn how_to_use(base: &str, tenant: &str, server: &str) -> HowToUse {
    let url = mcp_url(base, tenant, server);
    // Tenant and server together: two tenants may both have a "github".
    let name = format!("{tenant}-{server}");
    let bearer = format!("Bearer {TOKEN_PLACEHOLDER}");

    let cursor = ClientSetup {
        sign_in: snippet(
            "Add this entry to mcpServers in Cursor's mcp.json; Cursor opens the browser to sign in.".into(),
            Some("~/.cursor/mcp.json"),
            "json",
            pretty(json!({"mcpServers": {&name: {"url": &url}}})),
        ),
        api_key: snippet(
            format!("Add this entry to mcpServers in Cursor's mcp.json and replace {TOKEN_PLACEHOLDER}."),
            Some("~/.cursor/mcp.json"),
            "json",
            pretty(json!({"mcpServers": {&name: {"url": &url, "headers": {"Authorization": &bearer}}}})),
        ),
    };
    let claude_code = ClientSetup {
        sign_in: snippet(
            "Run this, then /mcp inside Claude Code to sign in through the browser.".into(),
            None,
            "shell",
            format!("claude mcp add --transport http {name} {url}"),
        ),
        api_key: snippet(
            format!("Run this with {TOKEN_PLACEHOLDER} replaced."),
            None,
            "shell",
            format!("claude mcp add --transport http {name} {url} --header \"Authorization: {bearer}\""),
        ),
    };
    let vscode = ClientSetup {
        sign_in: snippet(
            "Add this server to .vscode/mcp.json; VS Code asks you to sign in when it starts the server.".into(),
            Some(".vscode/mcp.json"),
            "json",
            pretty(json!({"servers": {&name: {"type": "http", "url": &url}}})),
        ),
        api_key: snippet(
            "Add this to .vscode/mcp.json; VS Code prompts for the token once and keeps it out of the file.".into(),
            Some(".vscode/mcp.json"),
            "json",
            pretty(json!({
                "inputs": [{
                    "type": "promptString",
                    "id": "mcpgate-token",
                    "description": format!("mcpgate token for {name}"),
                    "password": true
                }],
                "servers": {&name: {
                    "type": "http",
                    "url": &url,
                    "headers": {"Authorization": "Bearer ${input:mcpgate-token}"}
                }}
            })),
        ),
    };
    let python = snippet(
        format!("pip install mcp, replace {TOKEN_PLACEHOLDER}, run."),
        None,
        "python",
        format!(
            r#"import asyncio

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

URL = "{url}"
HEADERS = {{"Authorization": "{bearer}"}}


async def main():
    async with streamablehttp_client(URL, headers=HEADERS) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            print([tool.name for tool in tools.tools])


asyncio.run(main())
"#
        ),
    );
    let typescript = snippet(
        format!("npm install @modelcontextprotocol/sdk, replace {TOKEN_PLACEHOLDER}, run as an ES module."),
        None,
        "typescript",
        format!(
            r#"import {{ Client }} from "@modelcontextprotocol/sdk/client/index.js";
import {{ StreamableHTTPClientTransport }} from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const transport = new StreamableHTTPClientTransport(new URL("{url}"), {{
  requestInit: {{ headers: {{ Authorization: "{bearer}" }} }},
}});
const client = new Client({{ name: "my-script", version: "1.0.0" }});
await client.connect(transport);
const {{ tools }} = await client.listTools();
console.log(tools.map((tool) => tool.name));
await client.close();
"#
        ),
    );
    HowToUse { mcp_url: url, name, cursor, claude_code, vscode, python, typescript, before_first_use: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_snippets_parse_and_carry_the_url() {
        let h = how_to_use("https://gw.example.com", "acme", "github");
        assert_eq!(h.mcp_url, "https://gw.example.com/acme/mcp/github/server");
        for s in [&h.cursor.sign_in, &h.cursor.api_key, &h.vscode.sign_in, &h.vscode.api_key] {
            let value: serde_json::Value = serde_json::from_str(&s.content).unwrap();
            assert!(value.to_string().contains(&h.mcp_url));
        }
    }
}
