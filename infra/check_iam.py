"""Fails when an IAM statement in a CloudFormation/SAM template is wider than named resources.

Usage: python infra/check_iam.py template.yaml   (exit 1 and one line per finding)

Checks every policy statement anywhere in the template: no `*` in an Action or Resource, no
NotAction/NotResource, and no managed policy or SAM policy template in a function's Policies
(their statements are not in the template, so they cannot be checked here). Needs PyYAML only
(the SAM venv has it); CloudFormation short tags such as !Ref and !GetAtt are read as data.
"""

import sys

from cfn_yaml import as_list, run_check, strings


def _statement_findings(where, statement):
    if not isinstance(statement, dict):
        return [f"{where}: statement is not a mapping"]
    findings = []
    for key in ("NotAction", "NotResource", "NotPrincipal"):
        if key in statement:
            findings.append(f"{where}: {key} grants everything but a list")
    for key in ("Action", "Resource"):
        if key not in statement and statement.get("Effect") == "Allow":
            findings.append(f"{where}: Allow statement without {key}")
        for text in strings(statement.get(key, [])):
            if "*" in text:
                findings.append(f"{where}: {key} {text!r} uses a wildcard")
    return findings


def _walk(where, node, findings):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Statement":
                for i, statement in enumerate(as_list(value)):
                    findings.extend(_statement_findings(f"{where}.Statement[{i}]", statement))
            else:
                _walk(f"{where}.{key}", value, findings)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _walk(f"{where}[{i}]", item, findings)


def check(template):
    """Every finding of the template, as text lines."""
    findings = []
    for name, resource in (template.get("Resources") or {}).items():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function":
            for i, policy in enumerate(as_list(properties.get("Policies", []))):
                if not (isinstance(policy, dict) and "Statement" in policy):
                    findings.append(
                        f"{name}.Policies[{i}]: only inline statements can be checked; "
                        "write the statements out"
                    )
        _walk(name, resource, findings)
    return findings


def main(argv):
    return run_check(argv, check, "every IAM statement names its actions and resources")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
