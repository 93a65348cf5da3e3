//! Which redirect URIs a client may register, and when a requested one matches.
//!
//! Accepted: `https://` anywhere; `http://` only on loopback (`127.0.0.1`, `localhost`,
//! `[::1]`), where the port is chosen by the native app at run time and is therefore ignored
//! when matching (RFC 8252 §7.3); private-use schemes of native apps (`cursor://…`,
//! `com.example.app:/cb`, RFC 8252 §7.1). Everything else — plain `http` to another host,
//! schemes a browser would run or read locally — is refused.

use url::Url;

/// Schemes that are not an app's own: they execute, read local data, or are not navigations.
const REFUSED_SCHEMES: &[&str] =
    &["javascript", "data", "file", "vbscript", "blob", "about", "filesystem", "ftp", "ws", "wss", "view-source"];

pub const LOOPBACK_HOSTS: &[&str] = &["127.0.0.1", "localhost", "[::1]"];

/// The class of a redirect URI a client may register, or why it may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectKind {
    Https,
    Loopback,
    PrivateScheme,
}

pub fn classify(uri: &str) -> Result<RedirectKind, String> {
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI ({e})"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment, which redirect URIs may not have"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{uri:?} carries user information"));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(RedirectKind::Https),
        "http" if is_loopback(&url) => Ok(RedirectKind::Loopback),
        "http" => Err(format!(
            "{uri:?} uses plain http on a host other than loopback; use https, or http://127.0.0.1, localhost or [::1]"
        )),
        scheme if REFUSED_SCHEMES.contains(&scheme) || scheme == "https" => {
            Err(format!("{uri:?} uses the scheme {scheme:?}, which cannot receive an authorization response"))
        }
        _ => Ok(RedirectKind::PrivateScheme),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    }
}

/// Whether a redirect URI in an authorization request is one of the registered ones: exact
/// string equality, except that a loopback `http` URI matches whatever its port.
pub fn matches(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(asked) = Url::parse(requested) else { return false };
    if asked.scheme() != "http" || !is_loopback(&asked) {
        return false;
    }
    registered.iter().filter_map(|r| Url::parse(r).ok()).any(|r| {
        r.scheme() == "http"
            && is_loopback(&r)
            && r.host() == asked.host()
            && r.path() == asked.path()
            && r.query() == asked.query()
    })
}

/// What a person should see as "where the sign-in returns to": the website, an app on this
/// computer (loopback), or the app registered for a scheme.
pub fn display_target(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(url) if url.scheme() == "http" && is_loopback(&url) => {
            format!("an app on this computer ({})", url.host_str().unwrap_or_default())
        }
        Ok(url) if matches!(url.scheme(), "http" | "https") => url.host_str().unwrap_or_default().to_owned(),
        Ok(url) => format!("the app that opens {}: links", url.scheme()),
        Err(_) => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_clients_registrations_are_accepted() {
        // Cursor, VS Code, Claude Code, as their issue trackers show them.
        for uri in [
            "cursor://anysphere.cursor-retrieval/oauth/user-callback",
            "https://vscode.dev/redirect",
            "http://127.0.0.1:33418/",
            "http://localhost:51234/callback",
            "http://localhost/callback",
            "http://127.0.0.1/callback",
            "http://[::1]:8080/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(classify(uri).is_ok(), "{uri}: {:?}", classify(uri));
        }
        assert_eq!(classify("https://vscode.dev/redirect"), Ok(RedirectKind::Https));
        assert_eq!(classify("http://127.0.0.1:1/"), Ok(RedirectKind::Loopback));
        assert_eq!(classify("cursor://x/cb"), Ok(RedirectKind::PrivateScheme));
    }

    #[test]
    fn dangerous_or_remote_plain_http_uris_are_refused() {
        for uri in [
            "http://evil.example/cb",
            "http://127.0.0.2/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "https://app.example/cb#frag",
            "https://user:pw@app.example/cb",
            "not a uri",
            "/relative",
        ] {
            assert!(classify(uri).is_err(), "{uri} should be refused");
        }
    }

    #[test]
    fn loopback_matches_any_port_and_nothing_else_does() {
        let registered = vec!["http://127.0.0.1/callback".to_owned(), "https://app.example/cb".to_owned()];
        assert!(matches(&registered, "http://127.0.0.1:49152/callback"));
        assert!(matches(&registered, "http://127.0.0.1/callback"));
        assert!(!matches(&registered, "http://localhost:49152/callback"), "the host must be the same");
        assert!(!matches(&registered, "http://127.0.0.1:49152/other"));
        assert!(matches(&registered, "https://app.example/cb"));
        assert!(!matches(&registered, "https://app.example:8443/cb"), "only loopback ignores the port");
        assert!(!matches(&registered, "https://app.example/cb?x=1"));
        // VS Code registers one port and may come back on another.
        let vscode = vec!["http://127.0.0.1:33418/".to_owned()];
        assert!(matches(&vscode, "http://127.0.0.1:33419/"));
    }
}
