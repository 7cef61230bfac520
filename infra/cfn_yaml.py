"""Reads a CloudFormation/SAM template as plain data, for the template checks.

Short tags become their long forms (`!GetAtt A.B` -> `{"Fn::GetAtt": ["A", "B"]}`, `!Ref X` ->
`{"Ref": "X"}`), so the checks read one shape whichever form the template uses. Needs PyYAML
only (the SAM venv has it).
"""

import sys

import yaml


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short tags as their long forms."""


def _tagged(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if tag_suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _tagged)


def as_list(value):
    """A property that may be one item or a list, as a list (`None`: empty)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def strings(value):
    """Every string value inside a property, including inside intrinsic functions."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)


def load(path):
    """The template as plain data, intrinsic functions in their long form."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)


def run_check(argv, check, passed):
    """A check's command line: `NAME TEMPLATE`; prints each finding of `check(template)` and
    exits 1, or prints `passed` and exits 0."""
    if len(argv) != 2:
        print(f"usage: {argv[0].rsplit('/', 1)[-1]} TEMPLATE", file=sys.stderr)
        return 2
    findings = check(load(argv[1]))
    for line in findings:
        print(f"{argv[1]}: {line}")
    if findings:
        return 1
    print(f"{argv[1]}: {passed}")
    return 0
