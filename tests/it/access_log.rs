//! The API access log line of `template.yaml`: valid JSON whatever API Gateway puts in it,
//! the fields the runbooks read, and the size `docs/cost.md` prices.

use serde_json::Value;

fn template() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml"))
        .expect("template.yaml")
}

/// The stage's access log format: the folded (`>-`) block under `Format:`, its lines joined by
/// a space as YAML folds them.
fn access_log_format(template: &str) -> String {
    let mut lines = template
        .lines()
        .skip_while(|l| l.trim() != "Format: >-")
        .skip(1);
    let first = lines
        .next()
        .expect("a folded Format under AccessLogSettings");
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(
            lines.take_while(|l| l.len() - l.trim_start().len() == indent && !l.trim().is_empty()),
        )
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What API Gateway puts in for each `$context` variable of the format: a token request from
/// `python-requests`, and the dashes it writes for values it does not have.
fn render(format: &str, dashes: bool) -> String {
    let values = [
        ("$context.requestId", "JKJaXmPLvHcESHA="),
        ("$context.identity.sourceIp", "203.0.113.7"),
        ("$context.requestTimeEpoch", "1796558399999"),
        ("$context.httpMethod", "POST"),
        ("$context.path", "/oauth/token"),
        ("$context.status", "200"),
        ("$context.integrationStatus", "200"),
        ("$context.responseLatency", "23"),
        ("$context.integrationLatency", "21"),
        ("$context.responseLength", "812"),
        ("$context.identity.userAgent", "python-requests/2.32.3"),
        ("$context.integrationErrorMessage", "-"),
    ];
    let mut line = format.to_owned();
    // Longest first, so that a name another one starts with (`$context.requestTime` of
    // `$context.requestTimeEpoch`) never replaces part of it.
    let mut sorted = values.to_vec();
    sorted.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in sorted {
        // Numbers API Gateway always has stay numbers; every other value may be a dash.
        let value = if dashes && name != "$context.requestTimeEpoch" {
            "-"
        } else {
            value
        };
        line = line.replace(name, value);
    }
    assert!(
        !line.contains("$context"),
        "a variable the test does not know: {line}"
    );
    line
}

#[test]
fn the_access_log_line_is_json_with_the_runbooks_fields_in_240_bytes() {
    let format = access_log_format(&template());
    let line = render(&format, false);
    let doc: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let mut keys: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bytes",
            "fnError",
            "fnLatency",
            "fnStatus",
            "id",
            "ip",
            "latency",
            "method",
            "path",
            "status",
            "time",
            "ua"
        ]
    );
    assert_eq!(
        doc["time"], 1_796_558_399_999_i64,
        "epoch milliseconds, a number"
    );
    println!("{} bytes: {line}", line.len());
    // docs/cost.md prices this line at 229 bytes; a longer format must update the model.
    assert!(line.len() <= 240, "{} bytes: {line}", line.len());
    // A request without an integration (a throttle, an unknown route) is still JSON.
    let dashes = render(&format, true);
    serde_json::from_str::<Value>(&dashes).unwrap_or_else(|e| panic!("{e}: {dashes}"));
}

#[test]
fn every_request_names_at_most_one_route_by_method_and_path() {
    // The line leaves out `routeKey`: no two routes may match one method and path.
    let routes: Vec<(String, String)> = template()
        .lines()
        .filter_map(|l| l.split("RouteKey:").nth(1))
        .map(|r| {
            let r = r.split(',').next().unwrap().trim().trim_matches('"');
            let (method, path) = r.split_once(' ').expect("METHOD /path");
            (method.to_owned(), path.to_owned())
        })
        .collect();
    assert!(routes.len() >= 5, "{routes:?}");
    let pattern = |path: &str| {
        path.split('/')
            .map(|s| if s.starts_with('{') { "*" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    };
    for (i, (m1, p1)) in routes.iter().enumerate() {
        for (m2, p2) in &routes[i + 1..] {
            let methods_meet = m1 == m2 || m1 == "ANY" || m2 == "ANY";
            let paths_meet = p1.split('/').count() == p2.split('/').count()
                && pattern(p1)
                    .split('/')
                    .zip(pattern(p2).split('/'))
                    .all(|(a, b)| a == b || a == "*" || b == "*");
            assert!(
                !(methods_meet && paths_meet),
                "{m1} {p1} and {m2} {p2} can match one request"
            );
        }
    }
}
