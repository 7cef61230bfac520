//! The authorizer's settings, read once from the environment at start-up; a missing or
//! malformed value stops the start with a message naming the variable.

/// What the authorizer accepts, from the function's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `TOKEN_ISSUER`: the issuer URL, compared exactly with a token's `iss` (RFC 9068 §4);
    /// also where the JWKS is discovered when `jwks_uri` is not set.
    pub issuer: String,
    /// `AUTHORIZER_AUDIENCE`: the API's identifiers, comma-separated; a token's `aud` must
    /// contain one of them (RFC 9068 §4).
    pub audiences: Vec<String>,
    /// `AUTHORIZER_JWKS_URI`: where the signing keys are published; when unset, the
    /// `jwks_uri` of the issuer's metadata (read once, at start-up).
    pub jwks_uri: Option<String>,
    /// `AUTHORIZER_REQUIRED_SCOPE`: scopes every token must carry, space-separated
    /// (RFC 6749 §3.3); none when unset.
    pub required_scopes: Vec<String>,
}

/// A setting that stops the start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A required variable is unset or empty.
    #[error("{0} is not set; see functions/authorizer/README.md")]
    Missing(&'static str),
    /// A variable's value is malformed.
    #[error("{name}: {why}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong with its value (never the value of a secret: none is read here).
        why: String,
    },
}

const ISSUER: &str = "TOKEN_ISSUER";
const AUDIENCE: &str = "AUTHORIZER_AUDIENCE";
const JWKS_URI: &str = "AUTHORIZER_JWKS_URI";
const REQUIRED_SCOPE: &str = "AUTHORIZER_REQUIRED_SCOPE";

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (a variable's value, if it is set). An empty or
    /// blank value counts as unset, as a template parameter left empty sets it.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let read = |name| lookup(name).filter(|v| !v.trim().is_empty());
        let issuer = read(ISSUER).ok_or(SettingsError::Missing(ISSUER))?;
        check_url(ISSUER, &issuer)?;
        let audiences = audiences(&read(AUDIENCE).ok_or(SettingsError::Missing(AUDIENCE))?)?;
        let jwks_uri = read(JWKS_URI);
        if let Some(uri) = &jwks_uri {
            check_url(JWKS_URI, uri)?;
        }
        let required_scopes = match read(REQUIRED_SCOPE) {
            Some(text) => scopes(&text)?,
            None => Vec::new(),
        };
        Ok(Self {
            issuer,
            audiences,
            jwks_uri,
            required_scopes,
        })
    }
}

fn invalid(name: &'static str, why: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        name,
        why: why.into(),
    }
}

/// An absolute `https` URL without query or fragment, as an issuer identifier is (RFC 8414
/// §2) and as the verifier fetches; `http` only on a loopback host (a local issuer).
fn check_url(name: &'static str, url: &str) -> Result<(), SettingsError> {
    let (secure, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => {
            return Err(invalid(
                name,
                format!("{url:?} is not an absolute https URL"),
            ));
        }
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid(name, format!("{url:?} has no host")));
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            name,
            format!("{url:?} must have no query, fragment or spaces"),
        ));
    }
    if !secure && !is_loopback(authority) {
        return Err(invalid(
            name,
            format!("{url:?} must be https (http only on a loopback host)"),
        ));
    }
    Ok(())
}

/// Whether `authority` (`host[:port]`) names this machine.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The comma-separated audiences, each trimmed; none may be empty.
fn audiences(text: &str) -> Result<Vec<String>, SettingsError> {
    text.split(',')
        .map(str::trim)
        .map(|aud| {
            if aud.is_empty() {
                Err(invalid(AUDIENCE, "an empty audience in the list"))
            } else {
                Ok(aud.to_owned())
            }
        })
        .collect()
}

/// Space-separated scope-tokens: `1*( %x21 / %x23-5B / %x5D-7E )` (RFC 6749 §3.3).
fn scopes(text: &str) -> Result<Vec<String>, SettingsError> {
    text.split_whitespace()
        .map(|scope| {
            let valid = scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if valid {
                Ok(scope.to_owned())
            } else {
                Err(invalid(
                    REQUIRED_SCOPE,
                    format!("{scope:?} is not a scope token (RFC 6749 §3.3)"),
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    const BASE: [(&str, &str); 2] = [
        (ISSUER, "https://auth.example.com"),
        (AUDIENCE, "https://api.example.com"),
    ];

    #[test]
    fn issuer_and_audience_alone_are_enough() {
        let s = settings(&BASE).unwrap();
        assert_eq!(s.issuer, "https://auth.example.com");
        assert_eq!(s.audiences, ["https://api.example.com"]);
        assert_eq!(s.jwks_uri, None);
        assert!(s.required_scopes.is_empty());
    }

    #[test]
    fn every_setting_is_read() {
        let s = settings(&[
            (ISSUER, "https://auth.example.com"),
            (AUDIENCE, " https://api.example.com , orders "),
            (JWKS_URI, "https://auth.example.com/.well-known/jwks.json"),
            (REQUIRED_SCOPE, "orders.read  orders.write"),
        ])
        .unwrap();
        assert_eq!(s.audiences, ["https://api.example.com", "orders"]);
        assert_eq!(
            s.jwks_uri.as_deref(),
            Some("https://auth.example.com/.well-known/jwks.json")
        );
        assert_eq!(s.required_scopes, ["orders.read", "orders.write"]);
    }

    #[test]
    fn a_missing_or_blank_required_setting_is_named() {
        assert_eq!(
            settings(&BASE[1..]),
            Err(SettingsError::Missing("TOKEN_ISSUER"))
        );
        assert_eq!(
            settings(&[BASE[0], (AUDIENCE, "  ")]),
            Err(SettingsError::Missing("AUTHORIZER_AUDIENCE"))
        );
        let message = settings(&BASE[..1]).unwrap_err().to_string();
        assert!(
            message.starts_with("AUTHORIZER_AUDIENCE is not set"),
            "{message}"
        );
    }

    #[test]
    fn http_is_accepted_on_loopback_only() {
        for issuer in [
            "http://127.0.0.1:9000",
            "http://localhost:9000",
            "http://[::1]:9000/t",
        ] {
            let s = settings(&[(ISSUER, issuer), BASE[1]]).unwrap();
            assert_eq!(s.issuer, issuer);
        }
        assert!(settings(&[(ISSUER, "http://10.0.0.1"), BASE[1]]).is_err());
    }

    #[test]
    fn an_empty_optional_setting_is_unset() {
        let s = settings(&[BASE[0], BASE[1], (JWKS_URI, ""), (REQUIRED_SCOPE, " ")]).unwrap();
        assert_eq!(s.jwks_uri, None);
        assert!(s.required_scopes.is_empty());
    }

    #[test]
    fn malformed_values_are_refused_with_the_variable_named() {
        let cases = [
            (ISSUER, "auth.example.com"),
            (ISSUER, "https://"),
            (ISSUER, "https://auth.example.com/?x=1"),
            (ISSUER, "https://auth.example.com/#f"),
            (ISSUER, "ftp://auth.example.com"),
            (ISSUER, "http://auth.example.com"),
            (JWKS_URI, "http://auth.example.com/.well-known/jwks.json"),
            (AUDIENCE, "a,,b"),
            (AUDIENCE, "a,"),
            (JWKS_URI, "/.well-known/jwks.json"),
            (JWKS_URI, "https://auth example.com/jwks"),
            (REQUIRED_SCOPE, "orders\"read"),
            (REQUIRED_SCOPE, "caf\u{e9}"),
        ];
        for (name, value) in cases {
            let mut vars = BASE.to_vec();
            vars.retain(|(n, _)| *n != name);
            vars.push((name, value));
            match settings(&vars) {
                Err(SettingsError::Invalid { name: got, .. }) => {
                    assert_eq!(got, name, "{value:?}")
                }
                other => panic!("{name}={value:?} gave {other:?}"),
            }
        }
    }
}
