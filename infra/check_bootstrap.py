"""Checks that each `sam build` output is an arm64 (aarch64) ELF executable of at most 8 MB
(README "Performance": each function links only what it uses), that its AWS-LC is built as the
function needs (docs/performance.md "AWS-LC build per function"), and prints its size.

Usage: python infra/check_bootstrap.py .aws-sam/build/<Function>/bootstrap ...
"""

import os
import sys

EM_AARCH64 = 183
# The largest bootstrap a function may have, in bytes (issue 12's goal): a smaller package
# starts faster. The functions measure 3.7 (authorizer) to 6.9 MB (jwks, rotate-keys) with AWS-LC
# built for size (docs/performance.md).
MAX_BYTES = 8_000_000
# The exceptions:
# - the secret-scanning function, 8.0 MB, also links an HTTP client for the scanning programs'
#   keys documents (reqwest) and the SNS client for leak notices. It is not on the token path:
#   its cold start is paid by a rare leak report, which the programs retry.
# - the token function, 8.55 MB, links AWS-LC built for speed (SPEED_BUILD below), 0.85 MB more
#   than the size build's 7.7 MB: 9 MB is the goal plus that build. The larger package is
#   downloaded once per execution environment; the speed build saves every ES256 token 0.5 ms
#   and every ES256 client assertion or DPoP proof 1.3 ms of billed time at 256 MB
#   (docs/performance.md "AWS-LC build per function").
MAX_BYTES_BY_FUNCTION = {"SecretScanningFunction": 8_500_000, "TokenFunction": 9_000_000}

# The functions whose AWS-LC is built for speed (functions/token/.cargo/config.toml): -O3 with
# the precomputed tables. The token function signs every token. Every other function gets the
# size build (.cargo/config.toml: -Os and OPENSSL_SMALL), which leaves the tables out.
SPEED_BUILD = {"TokenFunction"}
# 2G, the second point of AWS-LC's P-256 table for the nistz256 assembly
# (crypto/fipsmodule/ec/p256-nistz-table.h, ecp_nistz256_precomputed[0][1].X, little-endian
# 64-bit limbs): that table is linked without OPENSSL_SMALL and left out with it. The bootstrap
# is stripped, so its bytes stand for its symbol; no other table of AWS-LC holds them.
NISTZ256_TABLE_2G_X = bytes.fromhex("4dd6dd10d44600857d8233a4c1e36aaa")


def limit(path):
    """The size limit of the bootstrap at `path` (.aws-sam/build/<Function>/bootstrap)."""
    return MAX_BYTES_BY_FUNCTION.get(function_name(path), MAX_BYTES)


def function_name(path):
    """The function whose bootstrap is at `path` (.aws-sam/build/<Function>/bootstrap)."""
    return os.path.basename(os.path.dirname(path))


def aws_lc_build(path):
    """The AWS-LC build linked into `path`: "speed" with the P-256 table, "size" without."""
    with open(path, "rb") as f:
        return "speed" if NISTZ256_TABLE_2G_X in f.read() else "size"


def aws_lc_build_error(path):
    """An error text when the AWS-LC build in `path` is not the one its function needs."""
    build = aws_lc_build(path)
    if function_name(path) in SPEED_BUILD and build != "speed":
        return f"{path}: AWS-LC is built for size (no P-256 table); this function needs the speed build"
    if function_name(path) not in SPEED_BUILD and build != "size":
        return f"{path}: AWS-LC is built for speed (P-256 table linked); this function gets the size build"
    return None


def check(path):
    """An error text, or None when the file is an aarch64 ELF executable of its size limit
    with its function's AWS-LC build."""
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
    return aws_lc_build_error(path)


def main(paths):
    errors = [e for e in map(check, paths) if e]
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    for path in paths:
        if os.path.isfile(path):
            size = os.path.getsize(path) / 1e6
            print(f"{path}: aarch64 ELF, {size:.1f} MB, AWS-LC {aws_lc_build(path)} build")
    return 1 if errors or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
