"""Writes a copy of the template whose custom-domain parameters default to example values.

Usage: python infra/with_domain.py template.yaml OUT.yaml

cfn-lint and `sam validate --lint` read parameter defaults only; `make template-check` lints
this copy too, so the template is checked with a custom domain (and its DNS record) as well
as without. Only the Defaults change: the copy keeps every short tag as written.
"""

import re
import sys

EXAMPLE = {
    "DomainName": "auth.example.com",
    "CertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/"
    "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
    "HostedZoneId": "Z0123456789ABCDEFGHIJ",
}


def set_defaults(text, values, script="with_domain.py"):
    """The template text with each named parameter's `Default` set to its value, whether the
    parameter is written on one line (`Name: {Type: String, Default: "", ...}`) or as a block."""
    for name, value in values.items():
        block = re.compile(rf"(\n  {name}:\n(?:    .*\n)*?    Default: ).*\n")
        text, count = block.subn(lambda m: f'{m.group(1)}"{value}"\n', text, count=1)
        if count == 0:
            one_line = re.compile(rf'(\n  {name}: \{{[^\n]*?\bDefault: )("[^"]*"|[^,}}\n]*)')
            text, count = one_line.subn(lambda m: f'{m.group(1)}"{value}"', text, count=1)
        if count != 1:
            raise SystemExit(f"{script}: no parameter {name} with a Default")
    return text


def main(argv, values=EXAMPLE, script="with_domain.py"):
    if len(argv) != 3:
        print(f"usage: {script} TEMPLATE OUT", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        text = f.read()
    with open(argv[2], "w", encoding="utf-8") as f:
        f.write(set_defaults(text, values, script))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
