//! Checks made before a request is trusted with anything: where it comes from (`Origin`, and
//! `Host` on a loopback gateway, against DNS rebinding) and whether its MCP headers agree with
//! its body.

use serde_json::Value;

/// Protocol revisions the proxy accepts in `MCP-Protocol-Version`.
pub const REVISIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
/// The stateless revision: no sessions, `Mcp-Method`/`Mcp-Name` on every request.
pub const STATELESS: &str = "2026-07-28";

/// Which browser origins and hosts may reach the MCP routes.
#[derive(Clone, Debug)]
pub struct OriginPolicy {
    /// `scheme://host[:port]` of the public URL.
    public_origin: String,
    /// The public host is loopback: then any loopback name and port is the gateway itself, and
    /// nothing else is (a rebinding attack arrives under a foreign Host name).
    loopback: bool,
    allowed: Vec<String>,
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, port)| if port.parse::<u16>().is_ok() { h } else { host }),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost" || name == "::1" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

impl OriginPolicy {
    pub fn new(public_base: &str, allowed: &[String]) -> Self {
        let public_origin = match url::Url::parse(public_base) {
            Ok(url) => url.origin().ascii_serialization(),
            Err(_) => public_base.trim_end_matches('/').to_owned(),
        };
        let host = url::Url::parse(public_base).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        Self {
            loopback: is_loopback_host(&host),
            public_origin,
            allowed: allowed.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect(),
        }
    }

    /// `Err` with the reason when the request must be refused.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), &'static str> {
        if self.loopback {
            if let Some(host) = host {
                if !is_loopback_host(host) {
                    return Err("the Host header does not name this gateway");
                }
            }
        }
        let Some(origin) = origin else { return Ok(()) };
        // Non-browser clients send no Origin; a browser page must be the gateway's own, an
        // allowed one or, for a loopback gateway, another loopback page.
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let ok = origin == self.public_origin
            || self.allowed.contains(&origin)
            || (self.loopback
                && url::Url::parse(&origin).ok().and_then(|u| u.host_str().map(is_loopback_host)).unwrap_or(false));
        if ok {
            Ok(())
        } else {
            Err("requests from this Origin are not allowed")
        }
    }
}

/// `Mcp-Name` is the tool or prompt name, or the resource URI.
pub fn name_of(message: &Value) -> Option<&str> {
    let params = message.get("params")?;
    params.get("name").or_else(|| params.get("uri")).and_then(Value::as_str)
}

/// The headers that let intermediaries route without reading the body must say what the body
/// says. Required under the stateless revision; checked whenever present.
pub fn check_headers(
    revision: Option<&str>,
    method_header: Option<&str>,
    name_header: Option<&str>,
    message: &Value,
) -> Result<(), String> {
    let method = message.get("method").and_then(Value::as_str);
    if revision == Some(STATELESS) && method.is_some() && method_header.is_none() {
        return Err(format!("protocol revision {STATELESS} requires the Mcp-Method header"));
    }
    if let (Some(header), Some(method)) = (method_header, method) {
        if header != method {
            return Err(format!("the Mcp-Method header ({header}) does not match the request method ({method})"));
        }
    }
    if let Some(header) = name_header {
        match name_of(message) {
            Some(name) if name == header => {}
            Some(name) => return Err(format!("the Mcp-Name header ({header}) does not match the request ({name})")),
            None => return Err("the Mcp-Name header is set but the request names nothing".into()),
        }
    } else if revision == Some(STATELESS) && name_of(message).is_some() {
        return Err(format!("protocol revision {STATELESS} requires the Mcp-Name header for this request"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn loopback_gateway_refuses_foreign_hosts_and_origins() {
        let policy = OriginPolicy::new("http://127.0.0.1:8080", &[]);
        assert!(policy.check(None, Some("127.0.0.1:8080")).is_ok());
        assert!(policy.check(Some("http://localhost:3000"), Some("localhost:9999")).is_ok());
        assert!(policy.check(None, Some("[::1]:8080")).is_ok());
        assert!(policy.check(Some("http://evil.example.com"), Some("evil.example.com")).is_err());
        assert!(policy.check(None, Some("evil.example.com")).is_err(), "rebinding: foreign Host");
        assert!(policy.check(Some("http://evil.example.com"), Some("127.0.0.1:8080")).is_err());
    }

    #[test]
    fn public_gateway_checks_origin_only() {
        let policy = OriginPolicy::new("https://gw.example.com/", &["https://console.example.org".into()]);
        assert!(policy.check(None, Some("internal-lb:8080")).is_ok());
        assert!(policy.check(Some("https://gw.example.com"), None).is_ok());
        assert!(policy.check(Some("https://console.example.org"), None).is_ok());
        assert!(policy.check(Some("http://localhost:3000"), None).is_err());
        assert!(policy.check(Some("null"), None).is_err());
    }

    #[test]
    fn routing_headers_must_match_the_body() {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}});
        assert!(check_headers(Some(STATELESS), Some("tools/call"), Some("echo"), &call).is_ok());
        assert!(check_headers(Some(STATELESS), None, Some("echo"), &call).is_err());
        assert!(check_headers(Some(STATELESS), Some("tools/call"), None, &call).is_err());
        assert!(check_headers(Some(STATELESS), Some("tools/list"), Some("echo"), &call).is_err());
        assert!(check_headers(Some("2025-11-25"), Some("tools/call"), Some("rm_rf"), &call).is_err());
        assert!(check_headers(Some("2025-11-25"), None, None, &call).is_ok(), "optional before 2026-07-28");
        let read = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "test://a"}});
        assert!(check_headers(Some(STATELESS), Some("resources/read"), Some("test://a"), &read).is_ok());
        let response = json!({"jsonrpc": "2.0", "id": 3, "result": {}});
        assert!(check_headers(Some(STATELESS), None, None, &response).is_ok());
    }
}
