"""Writes broken copies of the template, one per rule of check_operations.py, to prove it fails.

Usage: python infra/break_template.py template.yaml OUTDIR

Each copy is OUTDIR/<rule>--<what>.yaml with one thing taken away; `make template-check`
expects check_operations.py to refuse each with a finding of <rule>. A breakage that no
longer applies (the template changed) stops this script, so the proof cannot silently shrink.
"""

import os
import sys

import yaml

from cfn_yaml import load


def _resource(template, name):
    return template["Resources"][name]


def _props(template, name):
    return _resource(template, name)["Properties"]


def _delete(mapping, key):
    if key not in mapping:
        raise KeyError(key)
    del mapping[key]


def _remove_from_format(template, field):
    settings = _props(template, "ApiStage")["AccessLogSettings"]
    if field not in settings["Format"]:
        raise KeyError(field)
    settings["Format"] = settings["Format"].replace(field, "-")


def _jwks_reads_secret(template):
    statements = _props(template, "JwksFunction")["Policies"][0]["Statement"]
    statements.append(
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": "SigningKeySecret"},
        }
    )


def _no_runbook(template):
    description = _props(template, "Api5xxAlarm")["AlarmDescription"]
    description["Fn::Sub"] = description["Fn::Sub"].split(" Runbook:")[0]


BREAKAGES = {
    "log-retention--no-retention": lambda t: _delete(
        _props(t, "TokenLogGroup"), "RetentionInDays"
    ),
    "log-retention--no-log-group": lambda t: _delete(
        _props(t, "JwksFunction")["LoggingConfig"], "LogGroup"
    ),
    "log-retention--wrong-name": lambda t: _props(t, "RotateKeysLogGroup").update(
        LogGroupName="/aws/lambda/rotate-keys"
    ),
    "alarm--no-unavailable": lambda t: _delete(t["Resources"], "TokenUnavailableAlarm"),
    "alarm--no-invalid-client": lambda t: _delete(t["Resources"], "InvalidClientSpikeAlarm"),
    "alarm--no-rate-limited": lambda t: _delete(t["Resources"], "RateLimitedSpikeAlarm"),
    "alarm--no-refusal-flood": lambda t: _delete(t["Resources"], "RefusalFloodAlarm"),
    "alarm--no-rotate-keys-errors": lambda t: _delete(t["Resources"], "RotateKeysErrorsAlarm"),
    "alarm--no-jwks-throttles": lambda t: _delete(t["Resources"], "JwksThrottlesAlarm"),
    "alarm--no-dynamodb-throttles": lambda t: _delete(t["Resources"], "DynamoDbThrottlesAlarm"),
    "alarm--no-key-age": lambda t: _delete(t["Resources"], "SigningKeyAgeAlarm"),
    "alarm--no-api-5xx": lambda t: _delete(t["Resources"], "Api5xxAlarm"),
    "alarm--no-runbook": _no_runbook,
    "alarm--no-topic": lambda t: _delete(_props(t, "TokenErrorsAlarm"), "AlarmActions"),
    "encryption--audit": lambda t: _delete(_props(t, "AuditTable"), "SSESpecification"),
    "encryption--rate-limits": lambda t: _props(t, "RateLimitsTable")["SSESpecification"].update(
        SSEEnabled=False
    ),
    "pitr--clients": lambda t: _props(t, "ClientsTable")[
        "PointInTimeRecoverySpecification"
    ].update(PointInTimeRecoveryEnabled=False),
    "pitr--public-keys": lambda t: _delete(
        _props(t, "PublicKeysTable"), "PointInTimeRecoverySpecification"
    ),
    "jwks-secret--get-secret-value": _jwks_reads_secret,
    "access-log--none": lambda t: _delete(_props(t, "ApiStage"), "AccessLogSettings"),
    "access-log--no-user-agent": lambda t: _remove_from_format(t, "$context.identity.userAgent"),
    "access-log--no-retention": lambda t: _delete(
        _props(t, "AccessLogGroup"), "RetentionInDays"
    ),
    "deployment--permission-on-function": lambda t: _props(t, "TokenInvokePermission").update(
        FunctionName={"Ref": "TokenFunction"}
    ),
    "deployment--integration-on-latest": lambda t: _props(t, "JwksIntegration").update(
        IntegrationUri={"Fn::GetAtt": ["JwksFunction", "Arn"]}
    ),
    "deployment--no-rollback-alarm": lambda t: _delete(
        _props(t, "TokenFunction")["DeploymentPreference"], "Alarms"
    ),
}


def main(argv):
    if len(argv) != 3:
        print("usage: break_template.py TEMPLATE OUTDIR", file=sys.stderr)
        return 2
    os.makedirs(argv[2], exist_ok=True)
    for name, breakage in BREAKAGES.items():
        template = load(argv[1])
        breakage(template)
        with open(os.path.join(argv[2], f"{name}.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(template, f, sort_keys=False)
    print(f"{len(BREAKAGES)} broken copies of {argv[1]} in {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
