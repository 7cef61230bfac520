//! `infra/check_bootstrap.py`, which `make template-check` runs on the `sam build` output:
//! besides the size limit, it refuses a bootstrap whose AWS-LC build is not its function's
//! (docs/performance.md "AWS-LC build per function"): the token function's must carry the
//! P-256 table of the speed build, every other function's must not.
//!
//! Run on small stand-in files laid out as `sam build` lays out its output
//! (`<Function>/bootstrap`): an aarch64 ELF header, padding, and the table's bytes or not.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// 2G's X coordinate as AWS-LC's nistz256 table holds it (the script's
/// `NISTZ256_TABLE_2G_X`), from crypto/fipsmodule/ec/p256-nistz-table.h.
const TABLE_BYTES: [u8; 16] = [
    0x4d, 0xd6, 0xdd, 0x10, 0xd4, 0x46, 0x00, 0x85, 0x7d, 0x82, 0x33, 0xa4, 0xc1, 0xe3, 0x6a, 0xaa,
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A stand-in bootstrap of `function` under `dir`: a 64-bit little-endian aarch64 ELF header
/// (`EM_AARCH64` = 183), executable, with the P-256 table's bytes when `with_table`.
fn bootstrap(dir: &Path, function: &str, with_table: bool) -> PathBuf {
    let mut bytes = vec![0u8; 4096];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2;
    bytes[5] = 1;
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
    if with_table {
        bytes[2048..2048 + TABLE_BYTES.len()].copy_from_slice(&TABLE_BYTES);
    }
    let path = dir.join(function).join("bootstrap");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The script's verdict on `path`: exit status with its output.
fn check(path: &Path) -> Output {
    // The Python that `make` requires; the script needs nothing beyond its standard library.
    Command::new("python3")
        .arg(root().join("infra/check_bootstrap.py"))
        .arg(path)
        .output()
        .expect("python3 runs (a prerequisite of make, README \"Prerequisites\")")
}

#[test]
fn the_token_bootstrap_must_have_aws_lc_built_for_speed() {
    let dir = tempfile::tempdir().unwrap();
    let speed = check(&bootstrap(dir.path(), "TokenFunction", true));
    assert!(speed.status.success(), "{speed:?}");
    assert!(String::from_utf8_lossy(&speed.stdout).contains("AWS-LC speed build"));

    let size = check(&bootstrap(dir.path(), "TokenFunction", false));
    assert_eq!(size.status.code(), Some(1), "{size:?}");
    assert!(
        String::from_utf8_lossy(&size.stderr).contains(
            "AWS-LC is built for size (no P-256 table); this function needs the speed build"
        ),
        "{size:?}"
    );
}

#[test]
fn the_other_bootstraps_must_have_aws_lc_built_for_size() {
    let dir = tempfile::tempdir().unwrap();
    for function in [
        "JwksFunction",
        "RotateKeysFunction",
        "SecretScanningFunction",
        "AuthorizerFunction",
    ] {
        let size = check(&bootstrap(dir.path(), function, false));
        assert!(size.status.success(), "{function}: {size:?}");
        assert!(String::from_utf8_lossy(&size.stdout).contains("AWS-LC size build"));

        let speed = check(&bootstrap(dir.path(), function, true));
        assert_eq!(speed.status.code(), Some(1), "{function}: {speed:?}");
        assert!(
            String::from_utf8_lossy(&speed.stderr).contains(
                "AWS-LC is built for speed (P-256 table linked); this function gets the size build"
            ),
            "{function}: {speed:?}"
        );
    }
}
