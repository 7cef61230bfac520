//! The AWS Lambda front: reads API Gateway's request context into the shared router's
//! [`FrontContext`], and sets up what every function has (JSON logs, embedded metrics, its
//! init); the AWS adapters behind the routes come from [`crate::shapes::aws::AwsShape`].

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use lambda_http::request::RequestContext as ApiGatewayContext;
use metrics_cloudwatch_embedded::Collector;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry};

use crate::audit::{ISSUED, REQUEST_LINE};
use crate::clock::SystemClock;
use crate::config::FunctionEnvironment;
use crate::http::{self, Discovery, FrontContext};
use crate::issue::TokenService;
use crate::shapes::aws::AwsShape;

/// What the API Gateway HTTP API (payload format 2.0) context tells about a request.
///
/// The source address is API Gateway's `requestContext.http.sourceIp`, the TCP peer it saw;
/// `X-Forwarded-For` is written by the client and never trusted for the audit trail.
pub fn request_context(context: Option<&ApiGatewayContext>) -> FrontContext {
    match context {
        Some(ApiGatewayContext::ApiGatewayV2(c)) => FrontContext {
            request_id: c.request_id.clone().filter(|id| !id.is_empty()),
            source_ip: c.http.source_ip.clone().filter(|ip| !ip.is_empty()),
        },
        // Other event sources appear only if another crate enables their features; they
        // are not routed to these functions, and an empty context is the safe reading.
        #[allow(unreachable_patterns)]
        _ => FrontContext::default(),
    }
}

async fn api_gateway_context(request: Request, next: Next) -> Response {
    let mut request = request;
    let context = request_context(request.extensions().get::<ApiGatewayContext>());
    request.extensions_mut().insert(context);
    next.run(request).await
}

/// Adds the middleware that turns API Gateway's request context into a [`FrontContext`].
pub fn with_api_gateway_context(router: Router) -> Router {
    router.layer(middleware::from_fn(api_gateway_context))
}

/// The `function` dimension of the metrics: the Lambda function's own name
/// (`AWS_LAMBDA_FUNCTION_NAME`, `<stack>-token` from the template), so that two stacks in one
/// account and region keep their metrics, and their alarms, apart; `function` elsewhere.
pub fn metrics_dimension(function: &str, lambda_function_name: Option<&str>) -> String {
    lambda_function_name
        .filter(|name| !name.is_empty())
        .unwrap_or(function)
        .to_owned()
}

/// Installs the CloudWatch embedded metric format recorder for the `metrics` facade, in
/// namespace `TokenService` with a `function` dimension ([`metrics_dimension`]).
pub fn init_metrics(
    function: &'static str,
    lambda_function_name: Option<&str>,
) -> Result<&'static Collector, String> {
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace("TokenService")
        .with_dimension(
            "function",
            metrics_dimension(function, lambda_function_name),
        )
        .init()
        .map_err(|e| e.to_string())
}

/// The fields of the current request's [`REQUEST_LINE`] event, held for its metrics document:
/// one Lambda execution environment handles one request at a time.
static REQUEST_FIELDS: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());

/// Takes the [`REQUEST_LINE`] event's fields instead of the JSON log ([`json_subscriber`]).
struct RequestFields;

impl<S: tracing::Subscriber> Layer<S> for RequestFields {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = FieldValues::default();
        event.record(&mut fields);
        *REQUEST_FIELDS.lock().unwrap_or_else(|e| e.into_inner()) = if fields.issued {
            Vec::new()
        } else {
            fields.values
        };
    }
}

/// An event's fields as text, but the message, the outcome (the metrics document has it as a
/// dimension already) and empty values; and whether the outcome is `issued`.
///
/// An issued token's document carries its metrics only: its client id, source address,
/// request id and `jti` are in its audit record, written before the answer, and no rule or
/// metric reads them from the log ([`crate::audit::REQUEST_LINE`]). A refusal's document keeps
/// them: Contributor Insights ranks refusals by client id and source address.
#[derive(Default)]
struct FieldValues {
    values: Vec<(&'static str, String)>,
    issued: bool,
}

impl FieldValues {
    fn push(&mut self, field: &Field, value: String) {
        match field.name() {
            "outcome" => self.issued = value == ISSUED,
            "message" => {}
            name if !value.is_empty() => self.values.push((name, value)),
            _ => {}
        }
    }
}

impl Visit for FieldValues {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

/// Writes the metrics counted while handling a request, with the fields of its
/// [`REQUEST_LINE`] (client id, source address, request id, `jti`) as properties of the same
/// document: one line per token request, which both the metrics and Contributor Insights read.
pub fn write_metrics(collector: &Collector, writer: impl std::io::Write) -> std::io::Result<()> {
    let fields = std::mem::take(&mut *REQUEST_FIELDS.lock().unwrap_or_else(|e| e.into_inner()));
    for (name, value) in &fields {
        collector.set_property(*name, value.as_str());
    }
    let written = collector.flush(writer);
    for (name, _) in &fields {
        collector.remove_property(*name);
    }
    written
}

/// Writes the metrics of each request to stdout ([`write_metrics`]; CloudWatch Logs turns the
/// documents into metrics) once the response is ready.
pub fn with_embedded_metrics(router: Router, collector: &'static Collector) -> Router {
    router.layer(middleware::from_fn(
        move |request: Request, next: Next| async move {
            let response = next.run(request).await;
            if let Err(e) = write_metrics(collector, std::io::stdout().lock()) {
                tracing::warn!(error = %e, "could not write embedded metrics");
            }
            response
        },
    ))
}

/// What the token function serves: `POST /oauth/token` only.
pub fn token_router(service: Arc<TokenService>) -> Router {
    with_api_gateway_context(http::token_routes(service))
}

/// What the jwks function serves: the discovery documents only (it holds no private key).
pub fn discovery_router(discovery: Arc<Discovery>) -> Router {
    with_api_gateway_context(http::discovery_routes(discovery))
}

/// What the secret-scanning function serves: `POST /secret-scanning/github` and `/gitlab`.
#[cfg(feature = "scanning")]
pub fn scanning_router(service: Arc<crate::scanning::SecretScanning>) -> Router {
    with_api_gateway_context(http::scanning_routes(service))
}

/// The log filter of a function: `RUST_LOG` when it is set and valid (per-module
/// directives), else the level Lambda passes from the function's `LoggingConfig`
/// (`AWS_LAMBDA_LOG_LEVEL`: `TRACE` ... `FATAL`), else `info`.
pub fn log_filter(rust_log: Option<&str>, lambda_level: Option<&str>) -> EnvFilter {
    if let Some(Ok(filter)) = rust_log
        .filter(|directives| !directives.trim().is_empty())
        .map(EnvFilter::try_new)
    {
        return filter;
    }
    let level = match lambda_level
        .map(|l| l.trim().to_ascii_uppercase())
        .as_deref()
    {
        Some("TRACE") => "trace",
        Some("DEBUG") => "debug",
        Some("WARN") => "warn",
        // tracing has no level above error: FATAL keeps the errors.
        Some("ERROR" | "FATAL") => "error",
        _ => "info",
    };
    EnvFilter::new(level)
}

/// The functions' log format: one JSON object per line with `timestamp`, `level` (which
/// Lambda's JSON log format reads), the event's `fields` and the enclosing spans (the Lambda
/// runtime's carries the Lambda request id); no colours. The [`REQUEST_LINE`] event is not a
/// line of its own: its fields go into the request's metrics document ([`write_metrics`]),
/// whatever the log level.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let is_request_line = |m: &tracing::Metadata<'_>| m.target() == REQUEST_LINE;
    let lines = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .with_current_span(false)
        .with_filter(filter.and(filter_fn(move |m| !is_request_line(m))));
    Registry::default()
        .with(lines)
        .with(RequestFields.with_filter(filter_fn(is_request_line)))
}

/// Installs the JSON log subscriber on stdout with [`log_filter`] over the function's
/// environment.
pub fn init_tracing(env: &FunctionEnvironment) {
    json_subscriber(
        log_filter(env.rust_log.as_deref(), env.lambda_log_level.as_deref()),
        std::io::stdout,
    )
    .init();
}

/// A function whose init succeeded: the AWS shape built once for its execution environment.
pub struct Started {
    /// Settings, resource names and the SDK clients, with the shape's timeouts and retries
    /// ([`crate::shapes::aws::bounded_sdk_config`]).
    pub shape: AwsShape,
    function: &'static str,
    // The metrics dimension of the token function; the jwks function records no metrics.
    #[cfg_attr(not(feature = "secrets"), allow(dead_code))]
    lambda_function_name: Option<String>,
    at: std::time::Instant,
}

/// The init of every function: JSON logs, then the settings and resource names read from the
/// environment ([`FunctionEnvironment`]) and validated, then the SDK clients. A bad setting
/// stops the init (logged, and the error returned), it never turns into failing requests.
pub async fn start(function: &'static str) -> Result<Started, lambda_http::Error> {
    let at = std::time::Instant::now();
    let env = FunctionEnvironment::from_env();
    init_tracing(&env);
    let (config, resources) = env.config().inspect_err(|e| {
        tracing::error!(error = %e, "{function} function not started; fix its environment");
    })?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let shape = AwsShape::new(&sdk, resources, config, Arc::new(SystemClock));
    #[cfg(feature = "scanning")]
    let shape = match &env.alarm_topic_arn {
        Some(arn) => shape.with_alarm_topic(arn),
        None => shape,
    };
    Ok(Started {
        shape,
        function,
        lambda_function_name: env.function_name,
        at,
    })
}

impl Started {
    /// Logs the init time (`init_ms`) once the function's own set-up is done.
    pub fn initialised(&self) {
        let init_ms = self.at.elapsed().as_millis() as u64;
        tracing::info!(init_ms, "{} function initialised", self.function);
    }

    /// The token function's app: `POST /oauth/token` with the key set loaded during the init
    /// ([`AwsShape::token_router`]) and CloudWatch embedded metrics per request.
    #[cfg(feature = "secrets")]
    pub async fn token_app(&self) -> Result<Router, lambda_http::Error> {
        let metrics = init_metrics(self.function, self.lambda_function_name.as_deref())
            .inspect_err(|e| tracing::error!(error = %e, "metrics recorder not installed"))?;
        let app = with_embedded_metrics(self.shape.token_router().await, metrics);
        self.initialised();
        Ok(app)
    }

    /// The secret-scanning function's app ([`AwsShape::secret_scanning`]) with CloudWatch
    /// embedded metrics per request.
    #[cfg(feature = "scanning")]
    pub fn secret_scanning_app(&self) -> Result<Router, lambda_http::Error> {
        let metrics = init_metrics(self.function, self.lambda_function_name.as_deref())
            .inspect_err(|e| tracing::error!(error = %e, "metrics recorder not installed"))?;
        if !self.shape.notifies_leaks() {
            tracing::warn!("TOKEN_ALARM_TOPIC_ARN is not set: leaks are logged, not notified");
        }
        let app = with_embedded_metrics(scanning_router(self.shape.secret_scanning()), metrics);
        self.initialised();
        Ok(app)
    }

    /// The jwks function's app: the `/.well-known/` documents ([`AwsShape::discovery_router`]).
    pub fn discovery_app(&self) -> Router {
        let app = self.shape.discovery_router();
        self.initialised();
        app
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;

    use super::*;

    /// Held by the tests that emit a request line: they share [`REQUEST_FIELDS`].
    static REQUEST_LINE_TESTS: Mutex<()> = Mutex::new(());

    fn v2(request_id: Option<&str>, source_ip: Option<&str>) -> ApiGatewayContext {
        let mut c = ApiGatewayV2httpRequestContext::default();
        c.request_id = request_id.map(str::to_owned);
        c.http.source_ip = source_ip.map(str::to_owned);
        ApiGatewayContext::ApiGatewayV2(c)
    }

    #[test]
    fn api_gateway_ids_become_the_request_context() {
        let ctx = request_context(Some(&v2(Some("abc="), Some("203.0.113.7"))));
        assert_eq!(ctx.request_id.as_deref(), Some("abc="));
        assert_eq!(ctx.source_ip.as_deref(), Some("203.0.113.7"));
    }

    /// A log sink the tests read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The levels that reach the log under this environment, from one event of each level.
    fn levels_logged(rust_log: Option<&str>, lambda_level: Option<&str>) -> Vec<String> {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber =
            json_subscriber(log_filter(rust_log, lambda_level), move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!("t");
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!("e");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
                v["level"].as_str().expect("level field").to_owned()
            })
            .collect()
    }

    #[test]
    fn the_lambda_log_level_filters_application_logs() {
        assert_eq!(levels_logged(None, None), ["INFO", "WARN", "ERROR"]);
        assert_eq!(levels_logged(None, Some("WARN")), ["WARN", "ERROR"]);
        assert_eq!(levels_logged(None, Some("ERROR")), ["ERROR"]);
        assert_eq!(levels_logged(None, Some("FATAL")), ["ERROR"]);
        assert_eq!(
            levels_logged(None, Some("debug")),
            ["DEBUG", "INFO", "WARN", "ERROR"]
        );
        assert_eq!(levels_logged(None, Some("TRACE")).len(), 5);
        assert_eq!(levels_logged(None, Some("LOUD")), ["INFO", "WARN", "ERROR"]);
    }

    #[test]
    fn the_request_line_goes_to_the_metrics_document_at_any_level() {
        let _serial = REQUEST_LINE_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        for level in ["INFO", "WARN"] {
            let sink = Sink::default();
            let writer = sink.clone();
            let subscriber = json_subscriber(log_filter(None, Some(level)), move || writer.clone());
            tracing::subscriber::with_default(subscriber, || {
                tracing::info!(
                    target: REQUEST_LINE,
                    client_id = %"svc",
                    outcome = %"invalid_client",
                    source_ip = "203.0.113.7",
                    jti = "",
                    "token request"
                );
            });
            assert!(sink.0.lock().unwrap().is_empty(), "a log line at {level}");
            let fields = std::mem::take(&mut *REQUEST_FIELDS.lock().unwrap());
            assert_eq!(
                fields,
                [
                    ("client_id", "svc".to_owned()),
                    ("source_ip", "203.0.113.7".to_owned())
                ],
                "the outcome is a dimension already; an empty jti is left out"
            );
        }
    }

    #[test]
    fn an_issued_tokens_metrics_document_carries_no_request_fields() {
        let _serial = REQUEST_LINE_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let subscriber = json_subscriber(log_filter(None, Some("INFO")), std::io::sink);
        tracing::subscriber::with_default(subscriber, || {
            for outcome in ["invalid_client", ISSUED] {
                tracing::info!(
                    target: REQUEST_LINE,
                    client_id = %"svc",
                    outcome = %outcome,
                    source_ip = "203.0.113.7",
                    request_id = %"JKJaXmPLvHcESHA=",
                    jti = "DSh6Amib-fuoug_Vlh61bQ",
                    "token request"
                );
                let fields = std::mem::take(&mut *REQUEST_FIELDS.lock().unwrap());
                let names: Vec<_> = fields.iter().map(|(name, _)| *name).collect();
                if outcome == ISSUED {
                    assert_eq!(names, [""; 0], "its audit record holds them");
                } else {
                    assert_eq!(names, ["client_id", "source_ip", "request_id", "jti"]);
                }
            }
        });
    }

    #[test]
    fn the_metrics_dimension_is_the_lambda_function_name_when_there_is_one() {
        assert_eq!(metrics_dimension("token", Some("prod-token")), "prod-token");
        assert_eq!(metrics_dimension("token", Some("")), "token");
        assert_eq!(metrics_dimension("token", None), "token");
    }

    #[test]
    fn rust_log_when_set_and_valid_wins_over_the_lambda_level() {
        assert_eq!(levels_logged(Some("error"), Some("DEBUG")), ["ERROR"]);
        assert_eq!(
            levels_logged(Some("debug"), Some("ERROR")),
            ["DEBUG", "INFO", "WARN", "ERROR"]
        );
        // Empty or unparsable: the Lambda level applies.
        assert_eq!(levels_logged(Some(""), Some("WARN")), ["WARN", "ERROR"]);
        assert_eq!(levels_logged(Some("=[bad"), Some("ERROR")), ["ERROR"]);
    }

    #[test]
    fn missing_or_empty_ids_are_absent_not_empty() {
        assert_eq!(request_context(None), FrontContext::default());
        assert_eq!(
            request_context(Some(&v2(Some(""), Some("")))),
            FrontContext::default()
        );
    }
}
