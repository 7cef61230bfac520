//! The layout rule (DESIGN.md "Code layout"): the pure modules `src/oauth/`, `src/keys/` and
//! `src/clients/` name no store, no configuration, no start-up shape and no AWS crate; the
//! Lambda functions (`functions/*/src`) reach the library through `token_service::shapes`,
//! never into `token_service::store`. A function's own unit tests (`#[cfg(test)]` items) may
//! build stores for their fakes: they are not the function's wiring.
//!
//! Read from the source text: comments and string literals are dropped, then every path is
//! taken from the tokens, `use` trees flattened (`use crate::{config, store::X}`) and
//! `super::` chains resolved against the file's module, so that `super::super::store` from
//! `src/oauth/assertion.rs` counts as `crate::store`.

use std::path::{Path, PathBuf};

/// Modules of the crate root that the pure modules must not name.
const IMPURE_MODULES: [&str; 3] = ["store", "config", "shapes"];

/// External crates the pure modules must not name (prefixes of the crate name).
const AWS_CRATES: [&str; 5] = [
    "aws_sdk_",
    "aws_config",
    "aws_smithy",
    "lambda_http",
    "lambda_runtime",
];

/// Function sources that still reach into `store`, each with the issue that removes the
/// reach. An entry whose file no longer breaches fails the check too: remove it then.
const KNOWN_FUNCTION_BREACHES: [(&str, &str); 0] = [];

/// The pure modules, relative to the package root.
const PURE_DIRS: [&str; 3] = ["src/oauth", "src/keys", "src/clients"];

/// Rust source text without comments and string, char or byte literals: what the compiler
/// reads as paths, and nothing a comment or a message says.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    i += 2;
                } else if chars[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if let Some(end) = raw_string_end(&chars, i) {
            i = end;
            out.push_str("\"\"");
        } else if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if chars[i] == '\'' && char_literal_len(rest).is_some() {
            i += char_literal_len(rest).unwrap_or(1);
            out.push_str("' '");
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Where a raw string literal starting at `i` (`r"..."`, `r#"..."#`, `br#"..."#`) ends.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let preceded_by_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    if preceded_by_ident {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    let closing: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    (j + 1..=chars.len().saturating_sub(closing.len()))
        .find(|&k| chars[k..].starts_with(&closing))
        .map(|k| k + closing.len())
}

/// The length of a char literal at the start of `rest` (`'a'`, `'\n'`, `'\u{1F600}'`);
/// `None` for a lifetime (`'a`).
fn char_literal_len(rest: &[char]) -> Option<usize> {
    let close = if rest.get(1) == Some(&'\\') {
        rest.iter().skip(2).position(|&c| c == '\'')? + 2
    } else {
        2
    };
    (rest.get(close) == Some(&'\'')).then_some(close + 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Colons,
    Open,
    Close,
    Comma,
    Semi,
    Other,
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        let token = match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                i += 1;
                Token::Colons
            }
            '{' => Token::Open,
            '}' => Token::Close,
            ',' => Token::Comma,
            ';' => Token::Semi,
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            _ => Token::Other,
        };
        out.push(token);
        i += 1;
    }
    out
}

/// Every path the code names: each `use` tree flattened, and every `a::b::c` elsewhere.
fn paths(code: &str) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == Token::Ident("use".to_owned()) {
            let end = (i..tokens.len())
                .find(|&j| tokens[j] == Token::Semi)
                .unwrap_or(tokens.len());
            let mut at = i + 1;
            use_tree(&tokens[..end], &mut at, Vec::new(), &mut found);
            i = end;
            continue;
        }
        if let Token::Ident(_) | Token::Colons = tokens[i] {
            // A path: identifiers joined by `::` (whitespace between two identifiers ends it).
            let mut path = Vec::new();
            let mut after_colons = true;
            while let Some(token) = tokens.get(i) {
                match token {
                    Token::Ident(name) if after_colons => path.push(name.clone()),
                    Token::Colons if !after_colons || path.is_empty() => {}
                    _ => break,
                }
                after_colons = *token == Token::Colons;
                i += 1;
            }
            found.push(path);
            continue;
        }
        i += 1;
    }
    found
}

/// Flattens the use tree at `tokens[*at..]` under `prefix` into `found` (an alias after
/// `as` is dropped: it names nothing new).
fn use_tree(tokens: &[Token], at: &mut usize, prefix: Vec<String>, found: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while let Some(token) = tokens.get(*at) {
        match token {
            Token::Ident(name) if name == "as" => *at += 2,
            Token::Ident(name) => {
                path.push(name.clone());
                *at += 1;
            }
            Token::Colons | Token::Other => *at += 1,
            Token::Open => {
                *at += 1;
                while !matches!(tokens.get(*at), None | Some(Token::Close)) {
                    use_tree(tokens, at, path.clone(), found);
                    if tokens.get(*at) == Some(&Token::Comma) {
                        *at += 1;
                    }
                }
                *at += 1;
                return;
            }
            Token::Comma | Token::Close | Token::Semi => break,
        }
    }
    found.push(path);
}

/// The module path of a source file under `src/` (`src/oauth/mod.rs` -> `[oauth]`,
/// `src/oauth/grant.rs` -> `[oauth, grant]`).
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .skip(1)
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// What a path names from the crate root, when it starts at `crate` or climbs there by
/// `super` from `module`: its first segment below the root. A chain of `super`s at least as
/// long as the module path is counted as reaching the root (inline modules only go deeper).
fn crate_item<'p>(path: &'p [String], module: &[String]) -> Option<&'p str> {
    match path.first().map(String::as_str) {
        Some("crate") => path.get(1).map(String::as_str),
        Some("super") => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            (supers >= module.len())
                .then(|| path.get(supers).map(String::as_str))
                .flatten()
        }
        _ => None,
    }
}

/// The rule's breaches in one file of a pure module: each offending path, joined by `::`.
fn pure_module_breaches(source: &str, module: &[String]) -> Vec<String> {
    let code = code_only(source);
    let mut breaches: Vec<String> = paths(&code)
        .into_iter()
        .filter(|path| {
            let internal = crate_item(path, module).is_some_and(|m| IMPURE_MODULES.contains(&m));
            let external = path
                .first()
                .is_some_and(|first| AWS_CRATES.iter().any(|c| first.starts_with(c)));
            internal || external
        })
        .map(|path| path.join("::"))
        .collect();
    breaches.dedup();
    breaches
}

/// `code` without its `#[cfg(test)]` items: the attribute and the item after it, up to its
/// closing brace or semicolon.
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut depth = 0;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => {
                    end = i + 1;
                    break;
                }
                '}' => depth -= 1,
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The rule's breaches in one file of a Lambda function: paths into `token_service::store`
/// outside its `#[cfg(test)]` items.
fn function_breaches(source: &str) -> Vec<String> {
    let code = without_test_items(&code_only(source));
    paths(&code)
        .into_iter()
        .filter(|path| path.len() >= 2 && path[0] == "token_service" && path[1] == "store")
        .map(|path| path.join("::"))
        .collect()
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn pure_modules_import_no_store_config_shapes_or_aws() {
    let root = root();
    let mut files = Vec::new();
    for dir in PURE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 10,
        "the pure modules were not found: {files:?}"
    );
    let mut breaches = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).expect("under the root");
        let source = std::fs::read_to_string(file).expect("readable source");
        for path in pure_module_breaches(&source, &module_of(relative)) {
            breaches.push(format!("{}: {path}", relative.display()));
        }
    }
    assert!(
        breaches.is_empty(),
        "oauth/, keys/ and clients/ must not name store, config, shapes or an AWS crate:\n{}",
        breaches.join("\n")
    );
}

#[test]
fn functions_reach_the_library_through_shapes_not_store() {
    let root = root();
    let mut files = Vec::new();
    for function in std::fs::read_dir(root.join("functions")).expect("functions/") {
        let src = function.expect("entry").path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(!files.is_empty(), "no function sources found");
    let mut breaches = Vec::new();
    let mut known_seen = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("readable source");
        let relative = file.strip_prefix(&root).expect("under the root");
        let name = relative.to_string_lossy().into_owned();
        let found = function_breaches(&source);
        if KNOWN_FUNCTION_BREACHES
            .iter()
            .any(|(known, _)| *known == name)
        {
            if !found.is_empty() {
                known_seen.push(name);
            }
            continue;
        }
        for path in found {
            breaches.push(format!("{name}: {path}"));
        }
    }
    assert!(
        breaches.is_empty(),
        "functions must go through token_service::shapes, not token_service::store:\n{}",
        breaches.join("\n")
    );
    for (known, why) in KNOWN_FUNCTION_BREACHES {
        assert!(
            known_seen.iter().any(|seen| seen == known),
            "{known} no longer reaches into store ({why}): remove it from KNOWN_FUNCTION_BREACHES"
        );
    }
}

#[test]
fn the_matcher_finds_every_form_of_a_forbidden_import() {
    let sample = r##"
        //! Mentions crate::store in a comment, and "crate::config" in a string: both fine.
        use crate::store::AssertionReplay;
        use crate::{clients::Client, config::ServiceConfig};
        use crate::{keys::{KeySet, cache::{self}}, shapes};
        use aws_sdk_dynamodb::Client as Db;
        pub fn f(replay: &dyn super::super::store::AssertionReplay) -> aws_config::SdkConfig {
            let text = r#"crate::shapes"#;
            let c = '"';
            todo!("{text}{c} lambda_http::run")
        }
        fn g() { lambda_runtime::run(); let _ = crate::oauth::scope::ScopeSet::default(); }
    "##;
    let module = vec!["oauth".to_owned(), "assertion".to_owned()];
    assert_eq!(
        pure_module_breaches(sample, &module),
        [
            "crate::store::AssertionReplay",
            "crate::config::ServiceConfig",
            "crate::shapes",
            "aws_sdk_dynamodb::Client",
            "super::super::store::AssertionReplay",
            "aws_config::SdkConfig",
            "lambda_runtime::run",
        ]
    );
    // `super::store` from a file two levels down is `crate::oauth::store`, not the store.
    assert!(pure_module_breaches("use super::store::X;", &module).is_empty());
    assert_eq!(
        pure_module_breaches("use super::store::X;", &["oauth".to_owned()]),
        ["super::store::X"]
    );
    let clean = "use crate::values::is_scope_token;\nuse super::OAuthError; // crate::store\n";
    assert!(pure_module_breaches(clean, &module).is_empty());
}

#[test]
fn the_matcher_finds_a_function_that_reaches_into_store() {
    let bad = "use token_service::{shapes::aws, store::aws::DynamoDbAuditLog};\n\
               fn f() { token_service::store::aws::create_resources(); }";
    assert_eq!(
        function_breaches(bad),
        [
            "token_service::store::aws::DynamoDbAuditLog",
            "token_service::store::aws::create_resources",
        ]
    );
    let good = "use token_service::shapes::aws::AwsShape; // token_service::store is off limits\n\
                #[cfg(test)]\nmod tests { use token_service::store::sqlite::SqliteStore; fn f() {} }\n\
                #[cfg(test)]\nuse token_service::store::StoreError;";
    assert!(function_breaches(good).is_empty());
    let after_tests = "#[cfg(test)]\nmod tests { fn f() { g() } }\nuse token_service::store::X;";
    assert_eq!(function_breaches(after_tests), ["token_service::store::X"]);
}

#[test]
fn module_paths_follow_the_file_layout() {
    assert_eq!(module_of(Path::new("src/oauth/mod.rs")), ["oauth"]);
    assert_eq!(
        module_of(Path::new("src/oauth/grant.rs")),
        ["oauth", "grant"]
    );
    assert_eq!(module_of(Path::new("src/keys/a/b.rs")), ["keys", "a", "b"]);
}
