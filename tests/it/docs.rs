//! The documentation stays true to the code: the configuration table in
//! `docs/configuration.md` lists every service setting with its real variable, flag, default
//! and bounds, and every relative link (and `#anchor`) in README.md and docs/*.md resolves.
//!
//! The settings are read from the library at run time (`ServiceSettings`), never from the
//! source text, so a setting added to `service_settings!` without a row fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use token_service::config::{ServiceConfig, ServiceSettings};

/// The header of the one table checked against the code.
const SETTINGS_HEADER: &str = "| environment | flag | default | bounds | meaning |";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// README.md and every page under docs/.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let docs = root().join("docs");
    for entry in std::fs::read_dir(&docs).expect("docs/ exists") {
        let path = entry.expect("a docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The fields of a `Debug` rendering `Name { a: 1, b: "x", c: None }`, by name, with their
/// values as rendered.
fn debug_fields(rendered: &str) -> BTreeMap<String, String> {
    let inner = rendered
        .split_once(" { ")
        .and_then(|(_, rest)| rest.strip_suffix(" }"))
        .unwrap_or_else(|| panic!("not a struct rendering: {rendered}"));
    let (mut fields, mut current, mut depth, mut quoted) = (Vec::new(), String::new(), 0, false);
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                current.push(c);
                current.extend(chars.next());
                continue;
            }
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                fields.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    fields.push(current);
    fields
        .iter()
        .map(|f| {
            let (name, value) = f.trim().split_once(": ").expect("field: value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The settings read from an environment holding only `vars`, as rendered fields.
fn settings_with(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
    let settings = ServiceSettings::from_lookup(|name| {
        vars.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .unwrap_or_else(|e| panic!("{vars:?}: {e}"));
    debug_fields(&format!("{settings:?}"))
}

/// The validated configuration from an environment holding only `vars`.
fn config_with(vars: &[(&str, &str)]) -> Result<ServiceConfig, String> {
    ServiceSettings::from_lookup(|name| {
        vars.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .and_then(|s| s.validate(Some("http://127.0.0.1:9000")))
    .map_err(|e| e.to_string())
}

/// The text of each code span (`...`) in `cell`.
fn code_spans(cell: &str) -> Vec<&str> {
    let span = Regex::new("`([^`]*)`").unwrap();
    span.captures_iter(cell)
        .map(|c| c.get(1).unwrap().as_str())
        .collect()
}

/// The rows of the settings table, as cells.
fn settings_rows(page: &str) -> Vec<Vec<String>> {
    let mut lines = page.lines().skip_while(|l| l.trim() != SETTINGS_HEADER);
    assert!(
        lines.next().is_some(),
        "docs/configuration.md has no table headed {SETTINGS_HEADER}"
    );
    lines
        .skip(1) // the |---| line
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<String> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            assert_eq!(cells.len(), 5, "not five cells: {line}");
            cells
        })
        .collect()
}

/// Environment in which every documented bound can be reached on its own: the longest
/// pre-publication and lifetime, and the shortest default lifetime, lift the settings'
/// constraints on each other (`key-prepublication` > `jwks-max-age` + `key-cache`,
/// `default-ttl` <= `max-ttl`).
const ROOMY: &[(&str, &str)] = &[
    ("TOKEN_KEY_PREPUBLICATION", "2592000"),
    ("TOKEN_MAX_TTL", "86400"),
    ("TOKEN_DEFAULT_TTL", "1"),
];

/// `ROOMY` with `var` set to `value`.
fn roomy_with<'a>(var: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut vars: Vec<(&str, &str)> = ROOMY.iter().filter(|(v, _)| *v != var).copied().collect();
    vars.push((var, value));
    vars
}

/// Checks the bounds a cell states against what the configuration accepts: each stated bound
/// is accepted and the value just past it is refused with a message naming the variable.
fn check_bounds(var: &str, cell: &str) {
    let accepted = |value: &str| {
        if let Err(e) = config_with(&roomy_with(var, value)) {
            panic!("{var}={value} is within the documented bounds ({cell}) but refused: {e}");
        }
    };
    let refused = |value: &str| match config_with(&roomy_with(var, value)) {
        Ok(_) => panic!("{var}={value} is outside the documented bounds ({cell}) but accepted"),
        Err(e) => assert!(
            e.contains(var),
            "{var}={value} refused without naming it: {e}"
        ),
    };
    let number = |re: &str| {
        Regex::new(re)
            .unwrap()
            .captures(cell)
            .map(|c| c[1].parse::<u64>().unwrap())
    };
    // "`1` to `86400`", "`1` to `TOKEN_MAX_TTL`", "...; at most `2592000`".
    let lower = number(r"^`(\d+)` to ");
    let upper = number(r"^`\d+` to `(\d+)`").or_else(|| number(r"at most `(\d+)`"));
    if let Some(lo) = lower {
        accepted(&lo.to_string());
        refused(&lo.checked_sub(1).map_or("-1".to_owned(), |v| v.to_string()));
    }
    if let Some(hi) = upper {
        accepted(&hi.to_string());
        refused(&(hi + 1).to_string());
    }
    if let Some(list) = cell.strip_prefix("one of ") {
        let values = code_spans(list);
        assert!(!values.is_empty(), "{var}: `one of` names no value");
        for value in values {
            accepted(value);
            // Exact spelling: the value in another case is refused.
            let other_case = match value.to_lowercase() == value {
                true => value.to_uppercase(),
                false => value.to_lowercase(),
            };
            refused(&other_case);
        }
    }
    assert!(!cell.is_empty(), "{var} has no bounds");
}

#[test]
fn the_configuration_table_lists_every_setting_with_its_real_default_and_bounds() {
    let page = read(&root().join("docs/configuration.md"));
    let defaults = settings_with(&[]);
    let mut documented = BTreeSet::new();
    for cells in settings_rows(&page) {
        let [env, flag, default, bounds, meaning] = &cells[..] else {
            unreachable!("five cells")
        };
        let (var, flag) = match (&code_spans(env)[..], &code_spans(flag)[..]) {
            ([var], [flag]) => (*var, *flag),
            _ => panic!("a row needs one variable and one flag: {cells:?}"),
        };
        // The setting the variable really sets: the one field it changes.
        let with_var = settings_with(&[(var, "7")]);
        let changed: Vec<&String> = defaults
            .keys()
            .filter(|field| defaults[*field] != with_var[*field])
            .collect();
        let [field] = changed[..] else {
            panic!("{var} sets no setting, or several: {changed:?}")
        };
        assert_eq!(
            flag,
            format!("--{}", field.replace('_', "-")),
            "{var}: wrong flag"
        );
        let real = &defaults[field];
        if real == "None" {
            assert!(
                default.starts_with("unset"),
                "{var} has no default; its cell should start with `unset`: {default}"
            );
        } else {
            let stated = code_spans(default).first().copied().unwrap_or_default();
            assert_eq!(stated, real.trim_matches('"'), "{var}: wrong default");
        }
        check_bounds(var, bounds);
        assert!(!meaning.is_empty(), "{var} has no meaning");
        assert!(documented.insert(field.clone()), "{var} has two rows");
    }
    let settings: BTreeSet<String> = defaults.into_keys().collect();
    let missing: Vec<&String> = settings.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "settings without a row in docs/configuration.md: {missing:?}"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The lines of a markdown text outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors of a markdown file's headings, numbered as GitHub numbers repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for line in prose(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(heading.trim_start_matches('#'));
        let n = seen.entry(base.clone()).or_default();
        anchors.insert(match *n {
            0 => base.clone(),
            n => format!("{base}-{n}"),
        });
        *n += 1;
    }
    anchors
}

/// Every link target in a markdown text, outside code.
fn link_targets(text: &str) -> Vec<String> {
    let code = Regex::new("`[^`]*`").unwrap();
    let link = Regex::new(r#"\]\(([^)\s]+)(?:\s+"[^"]*")?\)"#).unwrap();
    prose(text)
        .into_iter()
        .flat_map(|line| {
            let line = code.replace_all(line, "");
            link.captures_iter(&line)
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = read(&file);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = match path {
                "" => file.clone(),
                path => file.parent().unwrap().join(path),
            };
            let shown = file.strip_prefix(root()).unwrap().display();
            if !linked.exists() {
                broken.push(format!("{shown}: {target}: no such file"));
                continue;
            }
            let is_markdown = linked.extension().is_some_and(|e| e == "md");
            if let (Some(anchor), true) = (anchor, is_markdown)
                && !anchors(&read(&linked)).contains(anchor)
            {
                broken.push(format!("{shown}: {target}: no such heading"));
            }
        }
    }
    assert!(checked > 0, "no relative link found: the parser is broken");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_follow_github() {
    let text = "# A `b`: c-d_e (f)\n```\n# not a heading\n```\n## A b: c-d_e f\n## A b: c-d_e f\n";
    assert_eq!(
        anchors(text),
        BTreeSet::from(["a-b-c-d_e-f", "a-b-c-d_e-f-1", "a-b-c-d_e-f-2"].map(String::from))
    );
    assert_eq!(
        link_targets("[x](a.md#b) `[y](no.md)` [w](d.md \"t\") [v](https://e)"),
        ["a.md#b", "d.md", "https://e"]
    );
}

/// The README is the front door (what it is, the shapes, prerequisites, quick start, tests,
/// links); reference text belongs in docs/.
#[test]
fn the_readme_stays_short() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines < 200,
        "README.md has {lines} lines; move reference text to docs/"
    );
}
