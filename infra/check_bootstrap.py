"""Checks that each `sam build` output is an arm64 (aarch64) ELF executable of at most 8 MB
(README "Performance": each function links only what it uses) and prints its size.

Usage: python infra/check_bootstrap.py .aws-sam/build/<Function>/bootstrap ...
"""

import os
import sys

EM_AARCH64 = 183
# The largest bootstrap a function may have, in bytes (issue 12's goal): a smaller package
# starts faster. The functions measure 6.9 (jwks, rotate-keys) to 7.7 MB (token, with
# private_key_jwt's assertion and DPoP proof checks; docs/performance.md).
MAX_BYTES = 8_000_000
# The one exception: the secret-scanning function, 8.0 MB, also links an HTTP client for the
# scanning programs' keys documents (reqwest) and the SNS client for leak notices. It is not on
# the token path: its cold start is paid by a rare leak report, which the programs retry.
MAX_BYTES_BY_FUNCTION = {"SecretScanningFunction": 8_500_000}


def limit(path):
    """The size limit of the bootstrap at `path` (.aws-sam/build/<Function>/bootstrap)."""
    function = os.path.basename(os.path.dirname(path))
    return MAX_BYTES_BY_FUNCTION.get(function, MAX_BYTES)


def check(path):
    """An error text, or None when the file is an aarch64 ELF executable."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError as e:
        return f"{path}: {e.strerror}"
    if header[:4] != b"\x7fELF":
        return f"{path}: not an ELF file"
    if header[4] != 2 or int.from_bytes(header[18:20], "little") != EM_AARCH64:
        return f"{path}: not a 64-bit aarch64 binary"
    if not os.access(path, os.X_OK):
        return f"{path}: not executable"
    size = os.path.getsize(path)
    if size > limit(path):
        return f"{path}: {size / 1e6:.1f} MB, above the {limit(path) / 1e6:.1f} MB limit"
    return None


def main(paths):
    errors = [e for e in map(check, paths) if e]
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    for path in paths:
        if os.path.exists(path):
            print(f"{path}: aarch64 ELF, {os.path.getsize(path) / 1e6:.1f} MB")
    return 1 if errors or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
