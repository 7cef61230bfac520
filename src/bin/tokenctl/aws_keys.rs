//! `keys init` and `keys rotate` on the aws backend: Secrets Manager runs the stack's rotation
//! function (`RotateSecret`), which is the only writer of the signing keys there; this waits
//! until the new version is current and prints the key it added. No local setting is read:
//! the function rotates with the stack's own lifetimes, skew and pre-publication delay.

use serde::Serialize;
use time::OffsetDateTime;
use token_service::admin::parse_duration;
use token_service::store::KeyStore;
use token_service::store::aws::{SecretsManagerKeyStore, rotate_now};

use crate::commands::CliResult;
use crate::views::{print_json, ts};
use token_service::config::AwsResourceSettings;

/// What `keys init` / `keys rotate --json` print on the aws backend.
#[derive(Debug, Serialize)]
struct RotationView {
    /// Whether a rotation ran (`keys init` on an existing set runs none).
    rotated: bool,
    /// The secret version that is now current, when a rotation ran.
    version_id: Option<String>,
    /// The newest key of the current set.
    kid: Option<String>,
    /// When the newest key may sign.
    #[serde(with = "time::serde::rfc3339::option")]
    activates_at: Option<OffsetDateTime>,
    /// How many keys the current set holds.
    keys: usize,
}

/// Rotates through the stack's rotation function; with `only_if_empty`, only when there is no
/// key yet (`keys init`). Waits at most `wait` (e.g. `120s`).
pub async fn rotate(
    names: &AwsResourceSettings,
    json: bool,
    only_if_empty: bool,
    wait: &str,
) -> CliResult {
    let wait = parse_duration(wait)
        .filter(|d| d.is_positive())
        .ok_or("--wait must be a duration such as 120s or 5m")?;
    let names = names.validate()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let keys = SecretsManagerKeyStore::new(sm.clone(), &names.key_secret_id);
    let mut version_id = None;
    if !only_if_empty || keys.load_key_set().await?.keys.is_empty() {
        version_id = Some(rotate_now(&sm, &names.key_secret_id, wait.unsigned_abs()).await?);
    }
    let set = keys.load_key_set().await?;
    let newest = set
        .keys
        .iter()
        .max_by_key(|k| (k.activates_at, k.created_at));
    let view = RotationView {
        rotated: version_id.is_some(),
        version_id,
        kid: newest.map(|k| k.kid.clone()),
        activates_at: newest.map(|k| k.activates_at),
        keys: set.keys.len(),
    };
    if json {
        return print_json(&view);
    }
    match (&view.version_id, newest) {
        (Some(version), Some(k)) => println!(
            "rotation finished (secret version {version} is current): added key {} (signs from \
             {}); {} key(s) in the set",
            k.kid,
            ts(k.activates_at),
            view.keys
        ),
        (Some(version), None) => {
            return Err(
                format!("rotation finished as version {version}, which holds no key").into(),
            );
        }
        (None, _) => println!("a key set exists already; nothing changed"),
    }
    Ok(())
}
