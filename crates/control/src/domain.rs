//! Input types that parse instead of validate: once a value has one of these types it is known
//! to be well formed, so an invalid slug or email cannot reach the database.

use std::fmt;

use crate::error::FieldError;

/// Whether text can be sent as (part of) an HTTP header value: not blank, at most `max`
/// bytes, and no control character but tab. Anything else would be refused by the HTTP
/// client on every later call, or split the header.
pub fn is_header_value(value: &str, max: usize) -> bool {
    !value.trim().is_empty() && value.len() <= max && !value.chars().any(|c| c.is_control() && c != '\t')
}

/// Header names whose values are credentials: they belong in a server's write-only outbound
/// auth, never in settings every collaborator reads or in the policy snapshot.
pub fn is_credential_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    const EXACT: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];
    const PARTS: &[&str] =
        &["auth", "token", "secret", "key", "password", "passwd", "credential", "session", "signature", "cookie"];
    EXACT.contains(&lower.as_str()) || PARTS.iter().any(|p| lower.contains(p))
}

/// A URL-safe identifier: lowercase ASCII letters, digits and single hyphens, 1–63 characters,
/// starting with a letter and not ending with a hyphen (the DNS label rules, so a slug is safe
/// in a path segment and a host name alike).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let err = |msg: &str| Err(FieldError::new(field, "invalid_slug", msg));
        if raw.is_empty() || raw.len() > 63 {
            return err("must be 1 to 63 characters long");
        }
        if !raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return err("may contain only lowercase letters a-z, digits and '-'");
        }
        if !raw.as_bytes()[0].is_ascii_lowercase() {
            return err("must start with a lowercase letter");
        }
        if raw.ends_with('-') || raw.contains("--") {
            return err("must not end with '-' or contain '--'");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, trimmed and lowercased so that lookups are case-insensitive. Only the
/// shape is checked (one `@`, non-empty local part and domain, no whitespace); whether the
/// mailbox exists is not this type's business.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim().to_lowercase();
        let valid = value.len() <= 320
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(value.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@')
                    && !domain.starts_with('.') && !domain.ends_with('.'));
        if valid {
            Ok(Self(value))
        } else {
            Err(FieldError::new(field, "invalid_email", "must be an email address like name@example.com"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A human-readable name: trimmed, 1–200 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim();
        if value.is_empty() || value.chars().count() > 200 {
            return Err(FieldError::new(field, "invalid_length", "must be 1 to 200 characters long"));
        }
        if value.chars().any(char::is_control) {
            return Err(FieldError::new(field, "invalid_characters", "must not contain control characters"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An optional free-text description: trimmed, empty means none, at most 2000 characters.
pub fn description(raw: Option<&str>) -> Result<Option<String>, FieldError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(d) if d.chars().count() > 2000 => {
            Err(FieldError::new("description", "invalid_length", "must be at most 2000 characters long"))
        }
        Some(d) => Ok(Some(d.to_owned())),
    }
}

/// A password chosen by a person. Long enough to resist guessing, bounded so hashing cannot
/// be used to burn CPU.
pub struct NewPassword(secrecy::SecretString);

impl NewPassword {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        if raw.chars().count() < Self::MIN_CHARS || raw.len() > Self::MAX_BYTES {
            return Err(FieldError::new(
                field,
                "weak_password",
                "must be at least 10 characters (and at most 1024 bytes) long",
            ));
        }
        Ok(Self(raw.into()))
    }

    pub fn secret(&self) -> &secrecy::SecretString {
        &self.0
    }
}

pub use mcpgate_policy::TenantRole;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever it is given, the check never accepts what the HTTP stack would refuse (or
        /// split into two headers), and never refuses a value of printable text.
        #[test]
        fn header_values_are_accepted_only_when_they_can_be_sent(value in "\\PC*|[\\x00-\\x7f]{0,40}", printable in "[ -~]{1,40}") {
            if is_header_value(&value, 8192) {
                prop_assert!(reqwest::header::HeaderValue::from_str(&value).is_ok(), "{:?}", value);
                prop_assert!(reqwest::header::HeaderValue::from_str(&value).is_ok(), "{:?}", value);
                prop_assert!(!value.contains(['\r', '\n', '\0']));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                prop_assert!(!is_header_value(&value, 8192));
            }
            prop_assert_eq!(is_header_value(&printable, 8192), !printable.trim().is_empty());
            prop_assert!(!is_header_value(&printable, printable.len() - 1));
        }
    }

    #[test]
    fn slugs() {
        for ok in ["a", "acme", "acme-corp", "a1-b2", &"a".repeat(63)] {
            assert!(Slug::parse("slug", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Acme", "1acme", "acme-", "ac--me", "ac_me", "ac me", "acmé", &"a".repeat(64)] {
            assert!(Slug::parse("slug", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(Email::parse("e", " Ann@Example.COM ").map(|e| e.0).ok(), Some("ann@example.com".into()));
        for bad in ["", "ann", "@x", "ann@", "a b@x.y", "a@b@c", "a@.x"] {
            assert!(Email::parse("e", bad).is_err(), "{bad}");
        }
    }
}
