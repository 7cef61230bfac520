//! Management operations shared by `tokenctl` (on either backend) and the embedded server's
//! first start: clients, secrets, keys. Each writes an admin audit record, never a secret.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::audit::{self, AuditRecord};
use crate::clients::claims::ClaimsEdit;
use crate::clients::keys::{KeyInputError, parse_public_keys};
use crate::clients::secret::generate_secret_id;
use crate::clients::{
    Client, ClientAuthMethod, ClientSecret, ClientSpecError, ClientStatus, ExtraClaims,
    StoredSecret, generate_client_id, validate_policy,
};
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::encoding::random_b64url;
use crate::keys::{KeyError, KeySet};
use crate::store::rotation::{RotateError, Rotated};
use crate::store::{AuditLog, ClientAdmin, KeyRotation, PublicKeyStore, StoreError};

/// Most live secrets a client may hold at once.
pub const MAX_LIVE_SECRETS: usize = 3;

/// Why a management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The client definition is invalid.
    #[error(transparent)]
    Spec(#[from] ClientSpecError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be made or read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A key rotation did not finish (on AWS: the rotation function's, waited for).
    #[error(transparent)]
    Rotate(RotateError),
    /// The client has no such secret.
    #[error("client {0} has no secret {1}")]
    NoSuchSecret(String, String),
    /// A public key was refused (a private key among them: nothing is stored).
    #[error(transparent)]
    KeyInput(#[from] KeyInputError),
    /// The client has no key with this `kid`.
    #[error("client {0} has no key {1}")]
    NoSuchKey(String, String),
    /// The operation needs a client of the other authentication method.
    #[error("client {0} does not authenticate with {1}")]
    WrongMethod(String, &'static str),
    /// The client already holds the most live secrets allowed.
    #[error("client {0} already has {MAX_LIVE_SECRETS} live secrets; revoke one first")]
    TooManySecrets(String),
}

impl From<RotateError> for AdminError {
    /// A store or key failure keeps its own variant (a lost race stays `Store(Conflict)`).
    fn from(e: RotateError) -> Self {
        match e {
            RotateError::Store(e) => Self::Store(e),
            RotateError::Key(e) => Self::Key(e),
            other => Self::Rotate(other),
        }
    }
}

/// What a new client looks like.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    /// The id; generated when `None`.
    pub client_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// Default scopes; all allowed scopes when `None`.
    pub default_scopes: Option<Vec<String>>,
    /// Allowed audiences.
    pub audiences: Vec<String>,
    /// Default audience; the first audience when `None`.
    pub default_audience: Option<String>,
    /// Token lifetime in seconds; the service default when `None`.
    pub token_ttl: Option<u64>,
    /// Tokens per minute; the service default when `None`.
    pub rate_limit: Option<u32>,
    /// Extra claims of every token of the client; none when empty.
    pub claims: ExtraClaims,
    /// Whether every token of the client must be DPoP-bound (RFC 9449 §5.2).
    pub dpop_bound: bool,
}

/// Changes to a client's policy; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ClientUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New allowed scopes.
    pub scopes: Option<Vec<String>>,
    /// New default scopes.
    pub default_scopes: Option<Vec<String>>,
    /// New allowed audiences.
    pub audiences: Option<Vec<String>>,
    /// New default audience.
    pub default_audience: Option<String>,
    /// New token lifetime; `Some(None)` returns to the service default.
    pub token_ttl: Option<Option<u64>>,
    /// New issuance limit; `Some(None)` returns to the service default.
    pub rate_limit: Option<Option<u32>>,
    /// Changes to the extra claims; an empty edit leaves them as they are.
    pub claims: ClaimsEdit,
    /// Whether every token of the client must be DPoP-bound.
    pub dpop_bound: Option<bool>,
}

impl ClientUpdate {
    /// Names of the fields this update sets, for the audit record.
    pub fn field_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        let mut note = |set: bool, name| {
            if set {
                names.push(name);
            }
        };
        note(self.name.is_some(), "name");
        note(self.scopes.is_some(), "scopes");
        note(self.default_scopes.is_some(), "default_scopes");
        note(self.audiences.is_some(), "audiences");
        note(self.default_audience.is_some(), "default_audience");
        note(self.token_ttl.is_some(), "token_ttl");
        note(self.rate_limit.is_some(), "rate_limit");
        note(!self.claims.is_empty(), "claims");
        note(self.dpop_bound.is_some(), "dpop_bound");
        names
    }

    fn apply(self, c: &mut Client) -> Result<(), ClientSpecError> {
        if let Some(v) = self.name {
            c.name = v;
        }
        if let Some(v) = self.scopes {
            c.scopes = v;
        }
        if let Some(v) = self.default_scopes {
            c.default_scopes = v;
        }
        if let Some(v) = self.audiences {
            c.audiences = v;
        }
        if let Some(v) = self.default_audience {
            c.default_audience = v;
        }
        if let Some(v) = self.token_ttl {
            c.token_ttl = v;
        }
        if let Some(v) = self.rate_limit {
            c.rate_limit = v;
        }
        if let Some(v) = self.dpop_bound {
            c.dpop_bound = v;
        }
        Ok(self.claims.apply(&mut c.claims)?)
    }
}

/// The management façade over the store ports.
pub struct Admin {
    /// Client records.
    pub clients: Arc<dyn ClientAdmin>,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
    /// Rotations of the signing-key set.
    pub rotation: Arc<dyn KeyRotation>,
    /// The public keys.
    pub public_keys: Arc<dyn PublicKeyStore>,
    /// Service settings (lifetimes, schedule, retention).
    pub config: Arc<ServiceConfig>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Who is acting, recorded in admin audit records.
    pub actor: String,
}

impl Admin {
    async fn record(
        &self,
        client_id: &str,
        action: &str,
        fields: &[&str],
        now: OffsetDateTime,
    ) -> Result<(), AdminError> {
        let record = AuditRecord {
            client_id: client_id.to_owned(),
            timestamp: now,
            request_id: random_b64url(12),
            outcome: "admin".to_owned(),
            jti: None,
            scope: None,
            audience: None,
            source_ip: None,
            user_agent: None,
            actor: Some(self.actor.clone()),
            action: Some(action.to_owned()),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            auth_method: None,
            dpop_jkt: None,
            expires_at: (now + self.config.audit_retention).unix_timestamp(),
        };
        Ok(self.audit.append(&record).await?)
    }

    fn new_secret(now: OffsetDateTime) -> (ClientSecret, StoredSecret) {
        let secret = ClientSecret::generate();
        let stored = StoredSecret {
            secret_id: generate_secret_id(),
            hash: secret.hash(),
            created_at: now,
            expires_at: None,
        };
        (secret, stored)
    }

    /// Adds a new secret to `c` within the bound on live secrets.
    fn push_secret(
        c: &mut Client,
        now: OffsetDateTime,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<(StoredSecret, ClientSecret), AdminError> {
        let live = c.secrets.iter().filter(|s| s.is_live(now)).count();
        if live >= MAX_LIVE_SECRETS {
            return Err(AdminError::TooManySecrets(c.client_id.clone()));
        }
        let (secret, mut stored) = Self::new_secret(now);
        stored.expires_at = expires_at;
        c.secrets.push(stored.clone());
        Ok((stored, secret))
    }

    /// Creates a client with one secret; returns the record and the secret (shown once).
    pub async fn create_client(
        &self,
        spec: NewClient,
    ) -> Result<(Client, ClientSecret), AdminError> {
        let now = self.clock.now();
        let (secret, stored) = Self::new_secret(now);
        let mut client = new_client_record(spec, ClientAuthMethod::ClientSecret, now)?;
        client.secrets = vec![stored];
        self.store_new_client(&client, &[], now).await?;
        Ok((client, secret))
    }

    /// Creates a `private_key_jwt` client (no secret) with the public keys in `jwks` (a JWK or
    /// a JWKS). A private key among them refuses the whole creation; nothing is stored.
    pub async fn create_key_client(
        &self,
        spec: NewClient,
        jwks: &str,
    ) -> Result<Client, AdminError> {
        let now = self.clock.now();
        let keys = parse_public_keys(jwks, now)?;
        let mut client = new_client_record(spec, ClientAuthMethod::PrivateKeyJwt, now)?;
        client.keys = keys;
        self.store_new_client(&client, &["keys"], now).await?;
        Ok(client)
    }

    /// Checks a new client against the service's policy, stores it and audits its creation
    /// (with `fields` and, when it has any, its `claims`).
    async fn store_new_client(
        &self,
        client: &Client,
        fields: &[&str],
        now: OffsetDateTime,
    ) -> Result<(), AdminError> {
        validate_policy(client, self.config.max_ttl)?;
        self.clients.create_client(client).await?;
        let mut fields = fields.to_vec();
        if !client.claims.is_empty() {
            fields.push("claims");
        }
        self.record(&client.client_id, "client.create", &fields, now)
            .await
    }

    /// Adds the public keys in `jwks` to a `private_key_jwt` client: how it rotates its key
    /// (add the new one, move to it, remove the old one). Returns the added `kid`s.
    pub async fn add_client_keys(
        &self,
        client_id: &str,
        jwks: &str,
    ) -> Result<(Client, Vec<String>), AdminError> {
        let keys = parse_public_keys(jwks, self.clock.now())?;
        let kids = keys.iter().map(|k| k.kid.clone()).collect();
        let client = self
            .modify(client_id, "key.add", &["keys"], |c, _| {
                Self::require_key_client(c)?;
                c.keys.extend(keys);
                Ok(())
            })
            .await?;
        Ok((client, kids))
    }

    /// Removes one public key at once; assertions under its `kid` fail from the next request.
    pub async fn remove_client_key(
        &self,
        client_id: &str,
        kid: &str,
    ) -> Result<Client, AdminError> {
        self.modify(client_id, "key.remove", &["keys"], |c, _| {
            Self::require_key_client(c)?;
            let before = c.keys.len();
            c.keys.retain(|k| k.kid != kid);
            if c.keys.len() == before {
                return Err(AdminError::NoSuchKey(c.client_id.clone(), kid.to_owned()));
            }
            Ok(())
        })
        .await
    }

    fn require_key_client(c: &Client) -> Result<(), AdminError> {
        if c.auth_method == ClientAuthMethod::PrivateKeyJwt {
            Ok(())
        } else {
            Err(AdminError::WrongMethod(
                c.client_id.clone(),
                ClientAuthMethod::PrivateKeyJwt.as_str(),
            ))
        }
    }

    /// The client, or `NotFound`.
    pub async fn client(&self, client_id: &str) -> Result<Client, AdminError> {
        self.clients
            .get_client(client_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("client {client_id}")).into())
    }

    /// Reads the client, applies `change`, prunes expired secrets and stores it with the next
    /// version (optimistic locking).
    async fn modify(
        &self,
        client_id: &str,
        action: &str,
        fields: &[&str],
        change: impl FnOnce(&mut Client, OffsetDateTime) -> Result<(), AdminError>,
    ) -> Result<Client, AdminError> {
        let now = self.clock.now();
        let mut client = self.client(client_id).await?;
        change(&mut client, now)?;
        client.secrets.retain(|s| s.is_live(now));
        client.updated_at = now;
        client.version += 1;
        validate_policy(&client, self.config.max_ttl)?;
        self.clients.update_client(&client).await?;
        self.record(client_id, action, fields, now).await?;
        Ok(client)
    }

    /// Changes a client's policy. Optimistic locking: if someone else changed the client since
    /// it was read, the store answers `Conflict` and nothing is written.
    pub async fn update_client(
        &self,
        client_id: &str,
        update: ClientUpdate,
    ) -> Result<Client, AdminError> {
        let fields = update.field_names();
        self.modify(client_id, "client.update", &fields, |c, _| {
            Ok(update.apply(c)?)
        })
        .await
    }

    /// Sets a client's status (disable takes effect on its next request).
    pub async fn set_status(
        &self,
        client_id: &str,
        status: ClientStatus,
    ) -> Result<Client, AdminError> {
        let action = match status {
            ClientStatus::Active => "client.enable",
            ClientStatus::Disabled => "client.disable",
        };
        self.modify(client_id, action, &["status"], |c, _| {
            c.status = status;
            Ok(())
        })
        .await
    }

    /// Adds a secret, optionally expiring at `expires_at`; returns it (shown once).
    pub async fn add_secret(
        &self,
        client_id: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<(Client, StoredSecret, ClientSecret), AdminError> {
        let mut out = None;
        let client = self
            .modify(client_id, "secret.add", &["secrets"], |c, now| {
                out = Some(Self::push_secret(c, now, expires_at)?);
                Ok(())
            })
            .await?;
        let (stored, secret) = out.expect("set by a successful change");
        Ok((client, stored, secret))
    }

    /// Rotates a client's secret without downtime: adds a new secret and lets the current ones
    /// expire after `grace` (at once when zero). Returns the new secret (shown once).
    pub async fn rotate_secret(
        &self,
        client_id: &str,
        grace: Duration,
    ) -> Result<(Client, StoredSecret, ClientSecret), AdminError> {
        let mut out = None;
        let client = self
            .modify(client_id, "secret.rotate", &["secrets"], |c, now| {
                let cutoff = now + grace.max(Duration::ZERO);
                for s in c.secrets.iter_mut().filter(|s| s.is_live(now)) {
                    s.expires_at = Some(s.expires_at.map_or(cutoff, |e| e.min(cutoff)));
                }
                out = Some(Self::push_secret(c, now, None)?);
                Ok(())
            })
            .await?;
        let (stored, secret) = out.expect("set by a successful change");
        Ok((client, stored, secret))
    }

    /// Deletes a client; its audit trail stays.
    pub async fn delete_client(&self, client_id: &str) -> Result<(), AdminError> {
        let now = self.clock.now();
        let client = self.client(client_id).await?;
        self.clients
            .delete_client(client_id, client.version)
            .await?;
        self.record(client_id, "client.delete", &[], now).await
    }

    /// Revokes one secret at once.
    pub async fn revoke_secret(
        &self,
        client_id: &str,
        secret_id: &str,
    ) -> Result<Client, AdminError> {
        self.modify(client_id, "secret.revoke", &["secrets"], |c, _| {
            let before = c.secrets.len();
            c.secrets.retain(|s| s.secret_id != secret_id);
            if c.secrets.len() == before {
                return Err(AdminError::NoSuchSecret(
                    c.client_id.clone(),
                    secret_id.to_owned(),
                ));
            }
            Ok(())
        })
        .await
    }

    /// Rebuilds the secret index from the client records: once, for secrets stored before
    /// the index existed. Returns how many secrets it names.
    pub async fn reindex_secrets(&self) -> Result<usize, AdminError> {
        let now = self.clock.now();
        let indexed = self.clients.reindex_secrets().await?;
        self.record(audit::NO_CLIENT, "secrets.reindex", &[], now)
            .await?;
        Ok(indexed)
    }

    /// Every client.
    pub async fn list_clients(&self) -> Result<Vec<Client>, AdminError> {
        Ok(self.clients.list_clients().await?)
    }

    /// Rotates the signing keys now (DESIGN.md "Keys and rotation"), through the rotation
    /// port: on SQLite the new set and its public keys are stored in one atomic step, checked
    /// against the set the rotation started from (a rotation that lost a race rotates on top of
    /// the winner's set, so no key is lost); on AWS the stack's rotation function does it and
    /// this waits until it finished.
    pub async fn rotate_keys(&self) -> Result<Rotated, AdminError> {
        let rotated = self.rotate_when(&|_, _| true).await?;
        Ok(rotated.expect("a rotation that is always due rotates"))
    }

    /// Rotates when the newest key is at least `interval` old (or there is none): the
    /// automatic rotation of the embedded server. Returns whether it rotated; `false` also when
    /// another process rotated first.
    pub async fn rotate_if_due(&self, interval: Duration) -> Result<bool, AdminError> {
        let due = |set: &KeySet, now: OffsetDateTime| {
            let newest = set.keys.iter().map(|k| k.created_at).max();
            newest.is_none_or(|at| now - at >= interval)
        };
        Ok(self.rotate_when(&due).await?.is_some())
    }

    /// Creates the first key if the set is empty. Returns whether it did; `false` also when
    /// another process created it first.
    pub async fn ensure_signing_key(&self) -> Result<bool, AdminError> {
        Ok(self.create_first_key().await?.is_some())
    }

    /// Creates the first key if the set is empty: the rotation that created it, or `None` when
    /// there was a key already (another process may have created it first).
    pub async fn create_first_key(&self) -> Result<Option<Rotated>, AdminError> {
        self.rotate_when(&|set: &KeySet, _| set.keys.is_empty())
            .await
    }

    /// The key set in use.
    pub async fn key_set(&self) -> Result<KeySet, AdminError> {
        Ok(self.rotation.current().await?)
    }

    /// Rotates through the port when `due`, and records a rotation this process wrote.
    async fn rotate_when(
        &self,
        due: &(dyn Fn(&KeySet, OffsetDateTime) -> bool + Send + Sync),
    ) -> Result<Option<Rotated>, AdminError> {
        let rotated = self.rotation.rotate_when(due).await?;
        if rotated.as_ref().is_some_and(|r| r.written_here) {
            let now = self.clock.now();
            self.record(audit::NO_CLIENT, "keys.rotate", &["keys"], now)
                .await?;
        }
        Ok(rotated)
    }

    /// The public key records with their state at `now`.
    pub async fn key_status(&self) -> Result<Vec<KeyStatus>, AdminError> {
        let now = self.clock.now();
        let records = self.public_keys.public_keys().await?;
        let schedule = &self.config.schedule;
        let signing = schedule.signing_key(&records, now).map(|r| r.kid.clone());
        Ok(records
            .iter()
            .map(|r| KeyStatus {
                kid: r.kid.clone(),
                alg: r
                    .jwk
                    .common
                    .key_algorithm
                    .map_or_else(|| "-".to_owned(), |a| a.to_string()),
                created_at: r.created_at,
                activates_at: r.activates_at,
                signing: signing.as_deref() == Some(r.kid.as_str()),
                published: schedule.is_published(&records, &r.kid, now),
            })
            .collect())
    }
}

/// A key as `tokenctl keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyStatus {
    /// Key id.
    pub kid: String,
    /// The JWS algorithm it signs with, as its JWK publishes it.
    pub alg: String,
    /// When it was generated.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it may sign.
    #[serde(with = "time::serde::rfc3339")]
    pub activates_at: OffsetDateTime,
    /// Whether it signs now.
    pub signing: bool,
    /// Whether the JWKS publishes it now.
    pub published: bool,
}

/// Parses a duration such as `90s`, `15m`, `24h`, `7d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = digits.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::seconds(secs))
}

/// A new client record from `spec`, without credentials yet: the caller adds its secret or
/// its public keys.
fn new_client_record(
    spec: NewClient,
    auth_method: ClientAuthMethod,
    now: OffsetDateTime,
) -> Result<Client, AdminError> {
    let default_audience = spec
        .default_audience
        .or_else(|| spec.audiences.first().cloned())
        .ok_or(ClientSpecError::NoAudience)?;
    Ok(Client {
        client_id: spec.client_id.unwrap_or_else(generate_client_id),
        name: spec.name,
        status: ClientStatus::Active,
        default_scopes: spec.default_scopes.unwrap_or_else(|| spec.scopes.clone()),
        scopes: spec.scopes,
        audiences: spec.audiences,
        default_audience,
        token_ttl: spec.token_ttl,
        rate_limit: spec.rate_limit,
        secrets: Vec::new(),
        auth_method,
        keys: Vec::new(),
        claims: spec.claims,
        dpop_bound: spec.dpop_bound,
        created_at: now,
        updated_at: now,
        version: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_the_usual_units() {
        assert_eq!(parse_duration("90"), Some(Duration::seconds(90)));
        assert_eq!(parse_duration("15m"), Some(Duration::minutes(15)));
        assert_eq!(parse_duration("24h"), Some(Duration::hours(24)));
        assert_eq!(parse_duration("7d"), Some(Duration::days(7)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "h", "1w", "-5m", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
