"""Fails unless every Guard rule has a passing and a failing fixture, and no fixture names a
rule that does not exist.

Usage: python infra/policy/check_fixtures.py infra/policy

`cfn-guard test` (3.2.1) checks the expectations it is given and silently skips a rule with
none and an expectation naming no rule, so a misspelled name would make a case prove nothing.
Each RULES.guard has its fixtures in tests/RULES_tests.yaml. Needs PyYAML (the SAM venv has it).
"""

import pathlib
import re
import sys

import yaml

# A rule declaration; parameterized rules (`rule name(args)`) are helpers called by others.
RULE = re.compile(r"^rule\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:when\b|\{)", re.MULTILINE)


def problems(policy_dir):
    """Every problem of every rule file in policy_dir, as text lines."""
    found = []
    rule_files = sorted(pathlib.Path(policy_dir).glob("*.guard"))
    if not rule_files:
        found.append(f"{policy_dir}: no .guard files")
    for rules_path in rule_files:
        rules = set(RULE.findall(rules_path.read_text(encoding="utf-8")))
        tests_path = rules_path.parent / "tests" / f"{rules_path.stem}_tests.yaml"
        if not tests_path.exists():
            found.append(f"{rules_path}: no fixtures at {tests_path}")
            continue
        seen = {}
        for case in yaml.safe_load(tests_path.read_text(encoding="utf-8")) or []:
            for rule, status in case["expectations"]["rules"].items():
                if rule not in rules:
                    found.append(f"{tests_path}: case {case['name']!r} names no rule {rule!r}")
                seen.setdefault(rule, set()).add(status)
        for rule in sorted(rules):
            for status in ("PASS", "FAIL"):
                if status not in seen.get(rule, set()):
                    found.append(f"{rules_path}: rule {rule} has no {status} fixture")
    return found


def main(argv):
    if len(argv) != 2:
        print("usage: check_fixtures.py POLICY_DIR", file=sys.stderr)
        return 2
    found = problems(argv[1])
    for line in found:
        print(line, file=sys.stderr)
    if found:
        return 1
    print(f"{argv[1]}: every rule has a passing and a failing fixture")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
