"""Writes the plain CloudFormation that SAM makes of a template, offline, for the policy checks.

Usage: python infra/sam_transform.py template.yaml OUT.json

SAM's own translator (samtranslator, installed with aws-sam-cli in .venv-sam) expands
AWS::Serverless::* resources into the roles, versions, aliases, deployment groups and stacks
CloudFormation deploys, so `make template-check` runs the Guard rules (infra/policy) and
checkov over what AWS really creates, generated roles included. No AWS call: the template
names no managed policy by its short name (infra/policy/iam.guard refuses one), so the
translator never needs IAM's policy list, and the loader below answers with none.
"""

import json
import logging
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The managed-policy loader SAM asks for when a function names a policy by short name."""

    def load(self):
        return {}


def main(argv):
    if len(argv) != 3:
        print("usage: sam_transform.py TEMPLATE OUT.json", file=sys.stderr)
        return 2
    # Without a feature-toggle config the translator warns once per toggle it looks up.
    logging.getLogger("samtranslator.feature_toggle").setLevel(logging.ERROR)
    # The translator derives the partition of generated ARNs from the region; any will do.
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    with open(argv[1], encoding="utf-8") as f:
        template = yaml_parse(f.read())
    # A local CodeUri is what `sam build` packages; the translator wants the S3 location
    # `sam deploy` will upload it to (as `sam validate` does, a stand-in here).
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        code_uri = properties.get("CodeUri")
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(code_uri, str):
            properties["CodeUri"] = f"s3://sam-build/{code_uri.strip('./') or 'workspace'}"
    output = transform(template, {}, NoManagedPolicies())
    with open(argv[2], "w", encoding="utf-8") as f:
        json.dump(output, f, indent=2, sort_keys=False)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
