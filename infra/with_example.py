"""Writes a copy of the template with the example protected API switched on.

Usage: python infra/with_example.py template.yaml OUT.yaml

Like infra/with_domain.py: `make template-check` lints this copy and runs the policy rules
over it, so the template is checked with ExampleProtectedApi "true" (and the ApiAudience it
then needs) as well as with its default "false".
"""

import sys

from with_domain import main

EXAMPLE = {"ExampleProtectedApi": "true", "ApiAudience": "https://api.example.com"}

if __name__ == "__main__":
    sys.exit(main(sys.argv, EXAMPLE, "with_example.py"))
