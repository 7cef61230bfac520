"""Reads a CloudFormation/SAM template as plain data, for the template checks.

Short tags become their long forms (`!GetAtt A.B` -> `{"Fn::GetAtt": ["A", "B"]}`, `!Ref X` ->
`{"Ref": "X"}`), so the checks read one shape whichever form the template uses. Needs PyYAML
only (the SAM venv has it).
"""

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


def load(path):
    """The template as plain data, intrinsic functions in their long form."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)
