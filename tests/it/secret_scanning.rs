//! The gitleaks rule in `infra/gitleaks.toml` finds every generated secret and nothing that
//! merely resembles one.

use regex::Regex;
use token_service::clients::ClientSecret;

/// The rule's `regex` value, read from the TOML file (a literal '''...''' string).
fn rule() -> Regex {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/infra/gitleaks.toml"))
        .expect("infra/gitleaks.toml");
    let line = toml
        .lines()
        .find(|l| l.starts_with("regex = '''"))
        .expect("a regex line");
    let pattern = line
        .trim_start_matches("regex = '''")
        .trim_end_matches("'''");
    Regex::new(pattern).expect("the rule compiles")
}

fn found(re: &Regex, text: &str) -> Vec<String> {
    re.captures_iter(text).map(|c| c[1].to_owned()).collect()
}

#[test]
fn every_generated_secret_is_found_in_common_contexts() {
    let re = rule();
    for _ in 0..500 {
        let s = ClientSecret::generate();
        let s = s.expose();
        for text in [
            s.to_owned(),
            format!("CLIENT_SECRET={s}\n"),
            format!("\"client_secret\": \"{s}\","),
            format!("curl -u 'demo:{s}' https://x"),
            format!("export TOKEN=`{s}`"),
        ] {
            assert_eq!(found(&re, &text), [s], "missed in {text:?}");
        }
    }
}

#[test]
fn lookalikes_are_not_found() {
    let re = rule();
    let s = ClientSecret::generate().expose().to_owned();
    let body = &s[4..];
    for text in [
        format!("tks_{}", &body[..48]),              // one character short
        format!("{s}A"),                             // one character long
        format!("TKS_{body}"),                       // other case prefix
        format!("tk_{body}"),                        // other prefix
        format!("atks_{body}"),                      // inside a longer word
        format!("tks_{}", "a/b+c=".repeat(8) + "d"), // non-base64url characters
        "tks_".to_owned(),
        "the tks_ prefix alone".to_owned(),
    ] {
        assert!(found(&re, &text).is_empty(), "false positive on {text:?}");
    }
}
