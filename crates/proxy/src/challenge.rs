//! `WWW-Authenticate: Bearer …` challenges (RFC 6750 §3), as upstreams send them: where their
//! resource metadata is, which scope they want, what went wrong.

/// One parameter of a `WWW-Authenticate: Bearer …` challenge (`resource_metadata`, `scope`,
/// `error`).
pub fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let mut rest = challenge.trim_start().strip_prefix("Bearer")?;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let (key, after) = rest.split_once('=')?;
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => {
                let end = after.find([',', ' ']).unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value.to_owned());
        }
        rest = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_and_bare_parameters() {
        let challenge = r#"Bearer error="insufficient_scope", scope="a b", resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp""#;
        assert_eq!(
            challenge_param(challenge, "resource_metadata").as_deref(),
            Some("https://a.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(challenge_param(challenge, "scope").as_deref(), Some("a b"));
        assert_eq!(challenge_param(challenge, "error").as_deref(), Some("insufficient_scope"));
        assert_eq!(challenge_param("Bearer realm=x, scope=read", "scope").as_deref(), Some("read"));
        assert_eq!(challenge_param("Bearer realm=x", "resource_metadata"), None);
    }
}
