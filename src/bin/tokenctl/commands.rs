//! The client, secret and key commands.

use time::OffsetDateTime;
use token_service::admin::{Admin, ClientUpdate, KeyStatus, NewClient, parse_duration};
use token_service::clients::claims::{self, ClaimsEdit};
use token_service::clients::{ClientStatus, ExtraClaims};

use crate::args::{
    AuthArg, ClaimArgs, ClientKeysCommand, ClientsCommand, KeysCommand, SecretsCommand,
};
use crate::views::{
    ClientKeyView, ClientView, NewSecretView, RotationView, print_client, print_json, print_keys,
    print_new_secret, print_rotation, ts,
};

/// What every command returns.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

fn split_words(values: Vec<String>) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(str::to_owned)
        .collect()
}

pub async fn clients(admin: &Admin, json: bool, cmd: ClientsCommand) -> CliResult {
    match cmd {
        ClientsCommand::Create {
            name,
            id,
            scopes,
            default_scopes,
            audiences,
            default_audience,
            ttl,
            rate_limit,
            auth,
            jwk,
            dpop_bound,
            claims,
        } => {
            let mut extra = ExtraClaims::new();
            claims_edit(claims, Vec::new())?.apply(&mut extra)?;
            let spec = NewClient {
                client_id: id,
                name,
                scopes: split_words(scopes),
                default_scopes: default_scopes.map(split_words),
                audiences: split_words(audiences),
                default_audience,
                token_ttl: ttl,
                rate_limit,
                claims: extra,
                dpop_bound,
            };
            match (auth, jwk) {
                (AuthArg::PrivateKeyJwt, Some(path)) => {
                    let client = admin.create_key_client(spec, &read_jwk(&path)?).await?;
                    return print_created_key_client(json, &client);
                }
                (AuthArg::PrivateKeyJwt, None) => {
                    return Err("--auth private_key_jwt needs --jwk FILE (the public key)".into());
                }
                (AuthArg::ClientSecret, Some(_)) => {
                    return Err("--jwk needs --auth private_key_jwt".into());
                }
                (AuthArg::ClientSecret, None) => {}
            }
            let (client, secret) = admin.create_client(spec).await?;
            let view = NewSecretView {
                client_id: client.client_id.clone(),
                client_secret: secret.expose().to_owned(),
                secret_id: client.secrets[0].secret_id.clone(),
                expires_at: None,
            };
            print_new_secret(json, &view)
        }
        ClientsCommand::Update {
            client_id,
            name,
            scopes,
            default_scopes,
            audiences,
            default_audience,
            ttl,
            rate_limit,
            dpop_bound,
            claims,
            remove_claims,
        } => {
            let update = ClientUpdate {
                name,
                scopes: scopes.map(split_words),
                default_scopes: default_scopes.map(split_words),
                audiences: audiences.map(split_words),
                default_audience,
                token_ttl: or_default(ttl, "--ttl")?,
                rate_limit: or_default(rate_limit, "--rate-limit")?,
                claims: claims_edit(claims, remove_claims)?,
                dpop_bound,
            };
            if update.field_names().is_empty() {
                return Err("nothing to update: give at least one option".into());
            }
            let c = admin.update_client(&client_id, update).await?;
            if json {
                return print_json(&ClientView::from(&c));
            }
            print_client(&c);
            Ok(())
        }
        ClientsCommand::Keys(cmd) => client_keys(admin, json, cmd).await,
        ClientsCommand::Delete { client_id } => {
            admin.delete_client(&client_id).await?;
            if json {
                return print_json(&serde_json::json!({ "client_id": client_id, "deleted": true }));
            }
            println!("deleted client {client_id}");
            Ok(())
        }
        ClientsCommand::Stats { client_id, since } => {
            crate::audit::stats(admin, json, &client_id, &since).await
        }
        ClientsCommand::List => {
            let list = admin.list_clients().await?;
            if json {
                return print_json(&list.iter().map(ClientView::from).collect::<Vec<_>>());
            }
            println!("{:<24} {:<9} {:<24} NAME", "CLIENT_ID", "STATUS", "SCOPES");
            for c in &list {
                println!(
                    "{:<24} {:<9} {:<24} {}",
                    c.client_id,
                    c.status.as_str(),
                    c.scopes.join(" "),
                    c.name
                );
            }
            Ok(())
        }
        ClientsCommand::Show { client_id } => {
            let c = admin.client(&client_id).await?;
            if json {
                return print_json(&ClientView::from(&c));
            }
            print_client(&c);
            Ok(())
        }
        ClientsCommand::Disable { client_id } => {
            set_status(admin, json, &client_id, ClientStatus::Disabled).await
        }
        ClientsCommand::Enable { client_id } => {
            set_status(admin, json, &client_id, ClientStatus::Active).await
        }
    }
}

/// The claims flags as one edit: the --claims-json file replaces the set, then each --claim
/// sets a name, then each --remove-claim removes one. Nothing is checked against the rules
/// here: admin checks the resulting set, and refuses it whole.
fn claims_edit(args: ClaimArgs, remove: Vec<String>) -> Result<ClaimsEdit, String> {
    let replace = match args.claims_json {
        None => None,
        Some(path) => {
            let text = read_bounded(&path)?;
            let parsed =
                claims::parse_object(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(parsed)
        }
    };
    let set = args
        .claims
        .iter()
        .map(|a| claims::parse_assignment(a).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok(ClaimsEdit {
        replace,
        set,
        remove,
    })
}

/// Reads a JWK or JWK set file (at most 64 KiB: a JWKS of a few public keys is far smaller).
fn read_jwk(path: &std::path::Path) -> Result<String, String> {
    read_bounded(path)
}

/// Reads a small text file given on the command line (at most 64 KiB).
fn read_bounded(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() > 64 * 1024 {
        return Err(format!("{} is larger than 64 KiB", path.display()));
    }
    Ok(text)
}

fn print_created_key_client(json: bool, client: &token_service::clients::Client) -> CliResult {
    if json {
        return print_json(&ClientView::from(client));
    }
    print_client(client);
    eprintln!("The client authenticates with private_key_jwt: no secret was made.");
    Ok(())
}

async fn client_keys(admin: &Admin, json: bool, cmd: ClientKeysCommand) -> CliResult {
    let client = match cmd {
        ClientKeysCommand::Add { client_id, jwk } => {
            let (client, kids) = admin.add_client_keys(&client_id, &read_jwk(&jwk)?).await?;
            if !json {
                eprintln!("added key(s): {}", kids.join(" "));
            }
            client
        }
        ClientKeysCommand::Remove { client_id, kid } => {
            admin.remove_client_key(&client_id, &kid).await?
        }
        ClientKeysCommand::List { client_id } => admin.client(&client_id).await?,
    };
    if json {
        return print_json(
            &client
                .keys
                .iter()
                .map(ClientKeyView::from)
                .collect::<Vec<_>>(),
        );
    }
    print_keys(&client);
    Ok(())
}

/// Parses `default` as `None`, anything else as a number.
fn or_default<T: std::str::FromStr>(
    text: Option<String>,
    what: &str,
) -> Result<Option<Option<T>>, String> {
    match text.as_deref() {
        None => Ok(None),
        Some("default") => Ok(Some(None)),
        Some(n) => n
            .parse()
            .map(|v| Some(Some(v)))
            .map_err(|_| format!("{what} must be a number or `default`")),
    }
}

pub fn ago(admin: &Admin, text: &str) -> Result<OffsetDateTime, String> {
    parse_duration(text)
        .map(|d| admin.clock.now() - d)
        .ok_or_else(|| format!("invalid duration {text:?} (use e.g. 15m, 24h, 7d)"))
}

async fn set_status(admin: &Admin, json: bool, id: &str, status: ClientStatus) -> CliResult {
    let c = admin.set_status(id, status).await?;
    if json {
        return print_json(&ClientView::from(&c));
    }
    println!("client {} is {}", c.client_id, c.status.as_str());
    Ok(())
}

pub async fn secrets(admin: &Admin, json: bool, cmd: SecretsCommand) -> CliResult {
    match cmd {
        SecretsCommand::Add {
            client_id,
            expires_in,
        } => {
            let expires_at = match expires_in {
                None => None,
                Some(text) => {
                    let d = parse_duration(&text)
                        .ok_or_else(|| format!("invalid duration {text:?} (use e.g. 30d, 12h)"))?;
                    Some(admin.clock.now() + d)
                }
            };
            let (client, stored, secret) = admin.add_secret(&client_id, expires_at).await?;
            print_new_secret(
                json,
                &NewSecretView {
                    client_id: client.client_id,
                    client_secret: secret.expose().to_owned(),
                    secret_id: stored.secret_id,
                    expires_at: stored.expires_at,
                },
            )
        }
        SecretsCommand::Rotate { client_id, grace } => {
            let grace = parse_duration(&grace)
                .ok_or_else(|| format!("invalid duration {grace:?} (use e.g. 24h, 0)"))?;
            let (client, stored, secret) = admin.rotate_secret(&client_id, grace).await?;
            let view = NewSecretView {
                client_id: client.client_id.clone(),
                client_secret: secret.expose().to_owned(),
                secret_id: stored.secret_id,
                expires_at: None,
            };
            if json {
                return print_json(&serde_json::json!({
                    "client_id": view.client_id,
                    "client_secret": view.client_secret,
                    "secret_id": view.secret_id,
                    "expires_at": null,
                    "secrets": ClientView::from(&client).secrets,
                }));
            }
            print_new_secret(false, &view)?;
            for s in client
                .secrets
                .iter()
                .filter(|s| s.secret_id != view.secret_id)
            {
                let until = s.expires_at.map(ts).unwrap_or_else(|| "-".to_owned());
                println!("old secret {} works until {until}", s.secret_id);
            }
            Ok(())
        }
        SecretsCommand::Revoke {
            client_id,
            secret_id,
        } => {
            let c = admin.revoke_secret(&client_id, &secret_id).await?;
            if json {
                return print_json(&ClientView::from(&c));
            }
            println!("revoked {secret_id} of client {client_id}");
            Ok(())
        }
        SecretsCommand::Reindex => {
            let indexed = admin.reindex_secrets().await?;
            if json {
                return print_json(&serde_json::json!({ "indexed": indexed }));
            }
            println!("secret index rebuilt: {indexed} secrets");
            Ok(())
        }
    }
}

/// `keys init|rotate|list`. With `versioned` (the aws backend, where a rotation makes a new
/// secret version current) a rotation prints [`RotationView`]; otherwise its text names the key
/// added, and `--json` prints the key list.
pub async fn keys(admin: &Admin, json: bool, versioned: bool, cmd: KeysCommand) -> CliResult {
    let rotated = match cmd {
        KeysCommand::Init { .. } => admin.create_first_key().await?,
        KeysCommand::Rotate { .. } => Some(admin.rotate_keys().await?),
        KeysCommand::List => return list_keys(admin, json).await,
    };
    if versioned {
        let keys = match &rotated {
            Some(r) => r.keys.clone(),
            None => admin.key_set().await?,
        };
        return print_rotation(
            &RotationView::new(rotated.and_then(|r| r.version), &keys),
            json,
        );
    }
    if !json {
        match (&cmd, rotated) {
            (KeysCommand::Rotate { .. }, Some(r)) => {
                let newest = r.keys.keys.last().expect("a rotated set has a key");
                println!(
                    "added key {} (signs from {}); {} key(s) in the set",
                    newest.kid,
                    ts(newest.activates_at),
                    r.keys.keys.len()
                );
            }
            (_, Some(_)) => println!("created the first signing key"),
            (_, None) => println!("a key set exists already; nothing changed"),
        }
        return Ok(());
    }
    list_keys(admin, json).await
}

async fn list_keys(admin: &Admin, json: bool) -> CliResult {
    let status: Vec<KeyStatus> = admin.key_status().await?;
    if json {
        return print_json(&status);
    }
    println!(
        "{:<44} {:<6} {:<8} {:<10} ACTIVATES_AT",
        "KID", "ALG", "SIGNING", "PUBLISHED"
    );
    for k in &status {
        println!(
            "{:<44} {:<6} {:<8} {:<10} {}",
            k.kid,
            k.alg,
            k.signing,
            k.published,
            ts(k.activates_at)
        );
    }
    Ok(())
}
