"""Fails when the template loses what operating the service relies on (docs/aws.md "Operations").

Usage: python infra/check_operations.py template.yaml   (exit 1 and one line per finding)

Each finding starts with its rule in brackets:
  [log-retention]  a function without its own log group (/aws/lambda/<function name>, named in
                   its LoggingConfig) that has a RetentionInDays;
  [alarm]          an alarm of docs/aws.md missing: 503s, invalid_client and rate_limited spikes,
                   errors and throttles of each function, DynamoDB throttles of every table,
                   the signing key's age, API 5xx; or an alarm without the topic or a runbook;
  [encryption]     a table without server-side encryption;
  [pitr]           the clients, audit or public-keys table without point-in-time recovery;
  [jwks-secret]    the jwks function allowed any Secrets Manager or KMS action, or any action
                   on the signing-key secret;
  [access-log]     an API stage without an access log (to a log group with retention) holding
                   method, path, status, integration status, latency and user agent;
  [deployment]     token or jwks without the `live` alias that their integration and invoke
                   permission name, or whose DeploymentPreference is not rolled back by the
                   function's own Errors alarm.
Needs PyYAML only (the SAM venv has it). infra/break_template.py writes one broken copy per
rule, which `make template-check` runs this check on.
"""

import sys

from cfn_yaml import as_list, run_check, strings

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
PITR_TABLES = ("ClientsTable", "AuditTable", "PublicKeysTable")
JWKS_FUNCTION = "JwksFunction"
SECRET = "SigningKeySecret"
ACCESS_LOG_FIELDS = (
    "$context.httpMethod",
    "$context.path",
    "$context.status",
    "$context.integrationStatus",
    "$context.responseLatency",
    "$context.identity.userAgent",
)


def _text(value):
    """A name as written: a string, or the template of a !Sub."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub[0] if isinstance(sub, list) else sub
    return value if isinstance(value, str) else None


def _ref(value):
    """The logical id a Ref (or GetAtt) points to, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def _of_type(resources, *types):
    return {n: r for n, r in resources.items() if r.get("Type") in types}


def _props(resource):
    return resource.get("Properties") or {}


def check_log_retention(resources):
    findings = []
    groups = _of_type(resources, "AWS::Logs::LogGroup")
    for name, function in _of_type(resources, *FUNCTION_TYPES).items():
        props = _props(function)
        group = _ref((props.get("LoggingConfig") or {}).get("LogGroup"))
        if group not in groups:
            findings.append(f"{name}: LoggingConfig.LogGroup names no log group of the stack")
            continue
        group_props = _props(groups[group])
        if "RetentionInDays" not in group_props:
            findings.append(f"{name}: its log group {group} has no RetentionInDays")
        function_name = _text(props.get("FunctionName"))
        if function_name is None or _text(group_props.get("LogGroupName")) != (
            "/aws/lambda/" + function_name
        ):
            findings.append(f"{name}: its log group {group} is not /aws/lambda/<FunctionName>")
    return findings


def _metrics(alarm):
    """(namespace, metric name, {dimension: value}) of every metric an alarm reads."""
    props = _props(alarm)
    found = []
    if "MetricName" in props:
        dims = {d.get("Name"): d.get("Value") for d in as_list(props.get("Dimensions"))}
        found.append((props.get("Namespace"), props["MetricName"], dims))
    for query in as_list(props.get("Metrics")):
        metric = (query.get("MetricStat") or {}).get("Metric")
        if metric:
            dims = {d.get("Name"): d.get("Value") for d in as_list(metric.get("Dimensions"))}
            found.append((metric.get("Namespace"), metric.get("MetricName"), dims))
    return found


def _required_alarms(resources):
    """What must be watched: (description, predicate over one metric)."""

    def token(outcome):
        return lambda ns, m, d: (ns, m, _ref(d.get("function")), d.get("outcome")) == (
            "TokenService",
            "token_requests",
            "TokenFunction",
            outcome,
        )

    def function(metric, name):
        return lambda ns, m, d: (ns, m, _ref(d.get("FunctionName"))) == (
            "AWS/Lambda",
            metric,
            name,
        )

    def table(metric, name):
        return lambda ns, m, d: (ns, m, _ref(d.get("TableName"))) == (
            "AWS/DynamoDB",
            metric,
            name,
        )

    required = [
        ("temporarily_unavailable (503) answers", token("temporarily_unavailable")),
        ("an invalid_client spike", token("invalid_client")),
        ("a rate_limited spike", token("rate_limited")),
        (
            "refusals past a source's budget (not audited)",
            lambda ns, m, d: (ns, m, _ref(d.get("function")))
            == ("TokenService", "token_requests_unaudited", "TokenFunction"),
        ),
        (
            "the signing key's age",
            lambda ns, m, d: (ns, m, _ref(d.get("function")))
            == ("TokenService", "signing_key_age_seconds", "TokenFunction"),
        ),
        (
            "API Gateway 5xx",
            lambda ns, m, d: (ns, m) == ("AWS/ApiGateway", "5xx") and "ApiId" in d,
        ),
    ]
    for name in _of_type(resources, *FUNCTION_TYPES):
        required.append((f"errors of {name}", function("Errors", name)))
        required.append((f"throttles of {name}", function("Throttles", name)))
    for name in _of_type(resources, "AWS::DynamoDB::Table"):
        for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
            required.append((f"{metric} of {name}", table(metric, name)))
    return required


def check_alarms(resources):
    findings = []
    alarms = _of_type(resources, "AWS::CloudWatch::Alarm")
    topics = set(_of_type(resources, "AWS::SNS::Topic"))
    for name, alarm in alarms.items():
        props = _props(alarm)
        if not any(_ref(a) in topics for a in as_list(props.get("AlarmActions"))):
            findings.append(f"{name}: no AlarmActions to the stack's SNS topic")
        description = _text(props.get("AlarmDescription")) or ""
        if "Runbook: ${RunbookUrl}#runbook-" not in description:
            findings.append(f"{name}: AlarmDescription links no runbook section")
        if not _text(props.get("AlarmName")):
            findings.append(f"{name}: no AlarmName")
    watched = [m for alarm in alarms.values() for m in _metrics(alarm)]
    for what, predicate in _required_alarms(resources):
        if not any(predicate(*m) for m in watched):
            findings.append(f"no alarm on {what}")
    return findings


def check_tables(resources):
    findings = []
    for name, table in _of_type(resources, "AWS::DynamoDB::Table").items():
        props = _props(table)
        if (props.get("SSESpecification") or {}).get("SSEEnabled") is not True:
            findings.append(f"[encryption] {name}: SSESpecification.SSEEnabled is not true")
        pitr = (props.get("PointInTimeRecoverySpecification") or {}).get(
            "PointInTimeRecoveryEnabled"
        )
        if name in PITR_TABLES and pitr is not True:
            findings.append(f"[pitr] {name}: point-in-time recovery is not enabled")
    for name in PITR_TABLES:
        if name not in resources:
            findings.append(f"[pitr] {name}: the table is missing")
    return findings


def check_jwks_secret(resources):
    function = resources.get(JWKS_FUNCTION)
    if function is None:
        return [f"{JWKS_FUNCTION}: missing"]
    findings = []
    for policy in as_list(_props(function).get("Policies")):
        if not isinstance(policy, dict):
            findings.append(f"{JWKS_FUNCTION}: policy {policy!r} is not an inline statement")
            continue
        for statement in as_list(policy.get("Statement")):
            actions = [a.lower() for a in strings(statement.get("Action"))]
            if any(a.startswith(("secretsmanager:", "kms:")) for a in actions):
                findings.append(f"{JWKS_FUNCTION}: may call {actions}")
            if SECRET in set(strings(statement.get("Resource"))):
                findings.append(f"{JWKS_FUNCTION}: a statement names {SECRET}")
    return findings


def check_access_log(resources):
    findings = []
    groups = _of_type(resources, "AWS::Logs::LogGroup")
    stages = _of_type(resources, "AWS::ApiGatewayV2::Stage", "AWS::ApiGateway::Stage")
    if not stages:
        findings.append("no API stage")
    for name, stage in stages.items():
        settings = _props(stage).get("AccessLogSettings") or {}
        group = _ref(settings.get("DestinationArn"))
        if group not in groups:
            findings.append(f"{name}: no access log to a log group of the stack")
        elif "RetentionInDays" not in _props(groups[group]):
            findings.append(f"{name}: its access log group {group} has no RetentionInDays")
        log_format = _text(settings.get("Format")) or ""
        missing = [f for f in ACCESS_LOG_FIELDS if f not in log_format]
        if missing:
            findings.append(f"{name}: the access log format lacks {', '.join(missing)}")
    return findings


ALIASED_FUNCTIONS = {
    "TokenFunction": ("TokenIntegration", "TokenInvokePermission"),
    "JwksFunction": ("JwksIntegration", "JwksInvokePermission"),
}


def check_deployment(resources):
    findings = []
    alarms = _of_type(resources, "AWS::CloudWatch::Alarm")
    for name, (integration, permission) in ALIASED_FUNCTIONS.items():
        props = _props(resources.get(name, {}))
        if props.get("AutoPublishAlias") != "live":
            findings.append(f"{name}: no AutoPublishAlias live")
        alias = {"Ref": f"{name}.Alias"}
        if _props(resources.get(integration, {})).get("IntegrationUri") != alias:
            findings.append(f"{integration}: IntegrationUri is not {name}'s alias")
        if _props(resources.get(permission, {})).get("FunctionName") != alias:
            findings.append(f"{permission}: FunctionName is not {name}'s alias")
        rollback = [
            _ref(a) for a in as_list((props.get("DeploymentPreference") or {}).get("Alarms"))
        ]
        if not any(
            (ns, m, _ref(d.get("FunctionName"))) == ("AWS/Lambda", "Errors", name)
            for a in rollback
            if a in alarms
            for ns, m, d in _metrics(alarms[a])
        ):
            findings.append(f"{name}: DeploymentPreference is not rolled back by its Errors alarm")
    return findings


def check(template):
    """Every finding of the template, as text lines starting with their rule."""
    resources = template.get("Resources") or {}
    findings = [f"[log-retention] {f}" for f in check_log_retention(resources)]
    findings += [f"[alarm] {f}" for f in check_alarms(resources)]
    findings += check_tables(resources)
    findings += [f"[jwks-secret] {f}" for f in check_jwks_secret(resources)]
    findings += [f"[access-log] {f}" for f in check_access_log(resources)]
    findings += [f"[deployment] {f}" for f in check_deployment(resources)]
    return findings


def main(argv):
    return run_check(argv, check, "logs, alarms, tables, jwks isolation, access log, aliases as documented")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
