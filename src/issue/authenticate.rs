//! Client authentication, the flow's first step: a secret (RFC 6749 §2.3.1), or a client
//! assertion (RFC 7523) whose one-time use is recorded in the used-ids store.

use time::OffsetDateTime;

use super::{TokenService, UNAVAILABLE};
use crate::clients::Client;
use crate::oauth::request::AuthMethod;
use crate::oauth::{OAuthError, TokenRequest, assertion, grant, used_ids};

impl TokenService {
    /// Authenticates by the method the request used: a secret, or a client assertion whose
    /// one-time use is then recorded (RFC 7523 §3 item 7).
    pub(super) async fn authenticate(
        &self,
        request: &TokenRequest,
        client: Option<Client>,
        now: OffsetDateTime,
    ) -> Result<Client, OAuthError> {
        let credentials = &request.credentials;
        if credentials.method != AuthMethod::PrivateKeyJwt {
            return grant::authenticate(&credentials.credential, client, now);
        }
        let policy = self.config.assertion_policy();
        let text = String::from_utf8_lossy(&credentials.credential);
        let id = credentials.client_id.as_str();
        let logged = request.recordable_client_id().unwrap_or_else(|| "-".into()); // never a secret
        let verified =
            assertion::verify(&text, id, client.as_ref(), &policy, now).map_err(|e| {
                tracing::info!(client_id = %logged, reason = %e, "client assertion refused");
                OAuthError::InvalidClient
            })?;
        let Some(replay) = &self.used_ids else {
            tracing::error!("no assertion replay cache configured; refusing private_key_jwt");
            return Err(OAuthError::InvalidClient);
        };
        let key = used_ids::client_assertion(id, &verified.jti);
        let (until, at) = (verified.remember_until, now.unix_timestamp());
        let first = replay.first_use(&key, until, at).await.map_err(|e| {
            tracing::error!(error = %e, "assertion replay cache unavailable");
            UNAVAILABLE
        })?;
        if !first {
            tracing::info!(client_id = %logged, "client assertion replayed");
            return Err(OAuthError::InvalidClient);
        }
        client.ok_or(OAuthError::InvalidClient)
    }
}
