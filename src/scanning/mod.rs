//! Leaked-secret reports from secret-scanning programs (GitHub secret scanning, GitLab secret
//! detection): the signature check, the lookup of each reported token in the secret index, what
//! a leak of ours does (`TOKEN_LEAKED_SECRET_ACTION`), the audit of every answer and the
//! answer itself (DESIGN.md "Endpoints").

pub mod keys;

use std::sync::Arc;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{self, AuditRecord, RequestContext};
use crate::clients::secret::looks_like_secret;
use crate::clients::{ClientStatus, SecretHash};
use crate::clock::Clock;
use crate::config::{LeakAction, ServiceConfig};
use crate::limits::{self, Window};
use crate::refusal::{RefusalBudget, Standing};
use crate::store::{AuditLog, ClientAdmin, RateLimits, SecretIndex, StoreError};
use keys::{ProgramKeys, SignatureError};

/// The largest report body read.
pub const MAX_BODY: usize = 64 * 1024;
/// The most tokens one report may carry.
pub const MAX_MATCHES: usize = 100;
/// The longest `url` or `source` kept in an audit record.
const MAX_FIELD: usize = 512;

/// A scanning program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// GitHub secret scanning (`Github-Public-Key-*` headers, feedback array answer).
    GitHub,
    /// GitLab secret detection (`Gitlab-Public-Key-*` headers, `200` answer).
    GitLab,
}

impl Program {
    /// The program's name in audit records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
        }
    }

    /// The headers naming the key and carrying the signature.
    pub fn headers(self) -> (&'static str, &'static str) {
        match self {
            Self::GitHub => (
                "github-public-key-identifier",
                "github-public-key-signature",
            ),
            Self::GitLab => (
                "gitlab-public-key-identifier",
                "gitlab-public-key-signature",
            ),
        }
    }
}

/// One reported token, as the programs send it.
#[derive(Debug, Deserialize)]
struct Reported {
    token: String,
    #[serde(rename = "type")]
    token_type: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// GitHub's feedback on one reported token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The type the program reported.
    pub token_type: String,
    /// `true_positive` (ours and valid) or `false_positive`.
    pub label: String,
}

/// The answer to a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanAnswer {
    /// Accepted: GitHub's feedback, one entry per reported token.
    Accepted(Vec<Feedback>),
    /// Unsigned, tampered, unknown key or wrong signature: `401`.
    Unauthenticated,
    /// Not JSON or not the documented shape: `400`.
    Malformed,
    /// Body over [`MAX_BODY`] or more than [`MAX_MATCHES`] tokens: `413`.
    TooLarge,
    /// The source is over its refusal budget: `429`.
    RateLimited {
        /// Seconds until the window ends.
        retry_after: u64,
    },
    /// The keys document or the store is unavailable: `503`, the program retries.
    Unavailable,
}

impl ScanAnswer {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Accepted(_) => "accepted",
            Self::Unauthenticated => "invalid_signature",
            Self::Malformed => "invalid_report",
            Self::TooLarge => "too_large",
            Self::RateLimited { .. } => audit::RATE_LIMITED,
            Self::Unavailable => "temporarily_unavailable",
        }
    }

    fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Unauthenticated | Self::Malformed | Self::TooLarge
        )
    }
}

/// One leaked secret of ours, as the alarm hears of it: never the secret or its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leak<'a> {
    /// The program that reported it.
    pub program: Program,
    /// Its client.
    pub client_id: &'a str,
    /// The secret's id (not the secret).
    pub secret_id: &'a str,
    /// Where the program found it, as audited (control characters blanked, at most 512 bytes).
    pub url: &'a str,
    /// The configured action.
    pub action: LeakAction,
    /// Whether the action changed the client (`false`: already disabled, or `report`).
    pub changed: bool,
}

/// The longest notification subject SNS takes is 99 characters.
const MAX_SUBJECT: usize = 99;

impl Leak<'_> {
    /// The notification's subject, `Leaked client secret: <client id>`: printable ASCII on one
    /// line, at most 99 characters, as SNS requires of a subject (other characters become `?`).
    pub fn subject(&self) -> String {
        let mut subject = String::from("Leaked client secret: ");
        subject.extend(self.client_id.chars().map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        }));
        subject.truncate(MAX_SUBJECT);
        subject
    }

    /// The notification's text: who reported what, where, what was done and what to do next.
    pub fn message(&self) -> String {
        let program = match self.program {
            Program::GitHub => "GitHub secret scanning",
            Program::GitLab => "GitLab secret detection",
        };
        let (client, secret) = (self.client_id, self.secret_id);
        let action = match (self.action, self.changed) {
            (LeakAction::Revoke, _) => format!(
                "the secret was revoked: it gets no more tokens; the client's other secrets keep \
                 working. Hand the client's owner a new secret: `tokenctl secrets add {client}`."
            ),
            (LeakAction::Disable, true) => format!(
                "the client was disabled: none of its secrets gets tokens. Hand the owner a new \
                 secret (`tokenctl secrets add {client}`), revoke this one (`tokenctl secrets \
                 revoke {client} {secret}`), then `tokenctl clients enable {client}`."
            ),
            (LeakAction::Disable, false) => "none: the client was already disabled.".to_owned(),
            (LeakAction::Report, _) => format!(
                "none (TOKEN_LEAKED_SECRET_ACTION=report): the secret still works. Revoke it \
                 once its owner has a new one: `tokenctl secrets revoke {client} {secret}`."
            ),
        };
        format!(
            "{program} reported a client secret of the token service in public code.\n\n\
             Client: {client}\n\
             Secret id: {secret}\n\
             Found at: {url}\n\
             Action taken: {action}\n\n\
             Tell the client's owner to remove the secret from the code and history. The audit \
             trail has the record: `tokenctl audit --client {client}`. A revocation cannot be \
             undone; see docs/secret-scanning.md, \"Undoing a revocation that was a mistake\" \
             (#undoing-a-revocation-that-was-a-mistake).\n",
            url = self.url,
        )
    }
}

/// Who hears of a leak besides the audit trail (the alarm topic on AWS, the log locally).
#[async_trait::async_trait]
pub trait LeakAlarm: Send + Sync {
    /// A secret was reported leaked and the action applied. Never given the secret; never
    /// fails the report (the audit record and the action are done).
    async fn leaked(&self, leak: &Leak<'_>);
}

/// The alarm of the embedded shape: a warning in the log.
pub struct LogAlarm;

#[async_trait::async_trait]
impl LeakAlarm for LogAlarm {
    async fn leaked(&self, leak: &Leak<'_>) {
        tracing::warn!(
            program = leak.program.as_str(),
            client_id = leak.client_id,
            secret_id = leak.secret_id,
            url = leak.url,
            action = leak.action.as_str(),
            changed = leak.changed,
            "a client secret was reported leaked"
        );
    }
}

/// The secret-scanning endpoints' logic over the store ports.
pub struct SecretScanning {
    /// Settings (the action, retention, the refusal budget).
    pub config: Arc<ServiceConfig>,
    /// The secret index.
    pub index: Arc<dyn SecretIndex>,
    /// Client records (read and updated).
    pub clients: Arc<dyn ClientAdmin>,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
    /// The refusal budget's counters.
    pub limits: Arc<dyn RateLimits>,
    /// The alarm.
    pub alarm: Arc<dyn LeakAlarm>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    github: ProgramKeys,
    gitlab: Option<ProgramKeys>,
}

/// The signature headers of a request.
pub struct Signed<'a> {
    /// The key identifier header.
    pub key_id: Option<&'a str>,
    /// The signature header.
    pub signature: Option<&'a str>,
}

fn clean(text: Option<&str>) -> String {
    let text = text.unwrap_or("-");
    let mut end = text.len().min(MAX_FIELD);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn hex_sha256(token: &str) -> String {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SecretScanning {
    /// The endpoints over these ports; the programs' keys come from the configured URLs.
    pub fn new(
        config: Arc<ServiceConfig>,
        index: Arc<dyn SecretIndex>,
        clients: Arc<dyn ClientAdmin>,
        audit: Arc<dyn AuditLog>,
        limits: Arc<dyn RateLimits>,
        alarm: Arc<dyn LeakAlarm>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let github = ProgramKeys::new(config.scanning.github_keys_url.clone());
        let gitlab = config
            .scanning
            .gitlab_keys_url
            .clone()
            .map(ProgramKeys::new);
        Self {
            config,
            index,
            clients,
            audit,
            limits,
            alarm,
            clock,
            github,
            gitlab,
        }
    }

    /// Whether the program's endpoint is served (GitLab's only with its keys URL set).
    pub fn serves(&self, program: Program) -> bool {
        program == Program::GitHub || self.gitlab.is_some()
    }

    fn keys(&self, program: Program) -> Option<&ProgramKeys> {
        match program {
            Program::GitHub => Some(&self.github),
            Program::GitLab => self.gitlab.as_ref(),
        }
    }

    /// Handles one report: `body` as received (`None` when it was over [`MAX_BODY`]).
    pub async fn handle(
        &self,
        program: Program,
        signed: Signed<'_>,
        body: Option<&[u8]>,
        meta: &RequestContext,
    ) -> ScanAnswer {
        let now = self.clock.now();
        let window = Window::at(now);
        let source = limits::source(meta.source_ip.as_deref());
        let budget = RefusalBudget::new(
            self.limits.as_ref(),
            &source,
            self.config.limits.refusal_budget,
            window,
        );
        match budget.check().await {
            Ok(Standing::Within) => {}
            Ok(Standing::Over { audited }) => {
                let answer = ScanAnswer::RateLimited {
                    retry_after: window.retry_after(),
                };
                if audited {
                    self.record_answer(program, &answer, 0, meta, now).await;
                }
                return answer;
            }
            Err(_) => return ScanAnswer::Unavailable,
        }
        let mut answer = self.judge(program, signed, body, meta, now).await;
        if answer.is_refusal() {
            match budget.charge().await {
                Ok(Standing::Within) => {}
                Ok(Standing::Over { audited }) => {
                    answer = ScanAnswer::RateLimited {
                        retry_after: window.retry_after(),
                    };
                    if !audited {
                        return answer;
                    }
                }
                Err(_) => answer = ScanAnswer::Unavailable,
            }
        }
        let reported = match &answer {
            ScanAnswer::Accepted(feedback) => feedback.len(),
            _ => 0,
        };
        if !self
            .record_answer(program, &answer, reported, meta, now)
            .await
        {
            return ScanAnswer::Unavailable;
        }
        metrics::counter!("secret_scanning_reports", "program" => program.as_str(), "outcome" => answer.outcome()).increment(1);
        answer
    }

    async fn judge(
        &self,
        program: Program,
        signed: Signed<'_>,
        body: Option<&[u8]>,
        meta: &RequestContext,
        now: OffsetDateTime,
    ) -> ScanAnswer {
        let Some(body) = body.filter(|b| b.len() <= MAX_BODY) else {
            return ScanAnswer::TooLarge;
        };
        let Some(keys) = self.keys(program) else {
            return ScanAnswer::Unauthenticated;
        };
        match keys.verify(signed.key_id, signed.signature, body).await {
            Ok(()) => {}
            Err(SignatureError::Invalid) => return ScanAnswer::Unauthenticated,
            Err(SignatureError::KeysUnavailable) => return ScanAnswer::Unavailable,
        }
        let Ok(reported) = serde_json::from_slice::<Vec<Reported>>(body) else {
            return ScanAnswer::Malformed;
        };
        if reported.len() > MAX_MATCHES {
            return ScanAnswer::TooLarge;
        }
        let mut feedback = Vec::with_capacity(reported.len());
        for (position, report) in reported.iter().enumerate() {
            let ours = match self.act_on(program, report, position, meta, now).await {
                Ok(ours) => ours,
                Err(e) => {
                    tracing::error!(error = %e, program = program.as_str(), "leak report not handled");
                    return ScanAnswer::Unavailable;
                }
            };
            feedback.push(Feedback {
                token_hash: hex_sha256(&report.token),
                token_type: report.token_type.clone(),
                label: if ours {
                    "true_positive"
                } else {
                    "false_positive"
                }
                .to_owned(),
            });
        }
        ScanAnswer::Accepted(feedback)
    }

    /// Finds a reported token and applies the configured action; whether it is ours.
    async fn act_on(
        &self,
        program: Program,
        report: &Reported,
        position: usize,
        meta: &RequestContext,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if !looks_like_secret(&report.token) {
            return Ok(false);
        }
        let hash = SecretHash::of(report.token.as_bytes());
        let Some(found) = self.index.find_secret(&hash).await? else {
            return Ok(false);
        };
        let Some(mut client) = self.clients.get_client(&found.client_id).await? else {
            return Ok(false);
        };
        let Some(secret) = client
            .secrets
            .iter()
            .find(|s| s.secret_id == found.secret_id && s.hash.matches(&hash))
        else {
            return Ok(false);
        };
        let live = secret.is_live(now);
        let action = self.config.scanning.action;
        let changed = match action {
            LeakAction::Revoke => {
                client.secrets.retain(|s| s.secret_id != found.secret_id);
                true
            }
            LeakAction::Disable if client.status == ClientStatus::Active => {
                client.status = ClientStatus::Disabled;
                true
            }
            LeakAction::Disable | LeakAction::Report => false,
        };
        if changed {
            client.version += 1;
            client.updated_at = now;
            self.clients.update_client(&client).await?;
        }
        let url = clean(report.url.as_deref());
        let record = AuditRecord {
            client_id: client.client_id.clone(),
            timestamp: now,
            request_id: format!("{}.{position}", meta.request_id),
            outcome: audit::ADMIN.to_owned(),
            jti: None,
            scope: None,
            audience: None,
            source_ip: meta.source_ip.clone(),
            user_agent: None,
            actor: Some(format!("{} secret scanning", program.as_str())),
            action: Some(format!("leak.{}", action.as_str())),
            fields: vec![
                format!("secret_id={}", found.secret_id),
                format!("source={}", clean(report.source.as_deref())),
                format!("url={url}"),
                format!("changed={changed}"),
            ],
            auth_method: None,
            dpop_jkt: None,
            expires_at: (now + self.config.audit_retention).unix_timestamp(),
        };
        self.audit.append(&record).await?;
        metrics::counter!("leaked_secrets").increment(1);
        let leak = Leak {
            program,
            client_id: &client.client_id,
            secret_id: &found.secret_id,
            url: &url,
            action,
            changed,
        };
        self.alarm.leaked(&leak).await;
        Ok(live)
    }

    /// Writes the record of an answer; whether it was written.
    async fn record_answer(
        &self,
        program: Program,
        answer: &ScanAnswer,
        reported: usize,
        meta: &RequestContext,
        now: OffsetDateTime,
    ) -> bool {
        let record = AuditRecord {
            client_id: audit::NO_CLIENT.to_owned(),
            timestamp: now,
            request_id: meta.request_id.clone(),
            outcome: answer.outcome().to_owned(),
            jti: None,
            scope: None,
            audience: None,
            source_ip: meta.source_ip.clone(),
            user_agent: meta.user_agent.as_deref().map(audit::clean_user_agent),
            actor: Some(format!("{} secret scanning", program.as_str())),
            action: Some(format!("scanning.{}", program.as_str())),
            fields: vec![format!("tokens={reported}")],
            auth_method: None,
            dpop_jkt: None,
            expires_at: (now + self.config.audit_retention).unix_timestamp(),
        };
        match self.audit.append(&record).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "secret-scanning answer not audited");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak<'a>(client_id: &'a str, action: LeakAction, changed: bool) -> Leak<'a> {
        Leak {
            program: Program::GitLab,
            client_id,
            secret_id: "s1",
            url: "https://gitlab.example/o/r/-/blob/main/.env",
            action,
            changed,
        }
    }

    #[test]
    fn the_subject_is_one_line_of_printable_ascii_under_a_hundred_characters() {
        let plain = leak("svc", LeakAction::Revoke, true);
        assert_eq!(plain.subject(), "Leaked client secret: svc");
        let odd = leak("é\nx\ty\u{7f}", LeakAction::Revoke, true);
        assert_eq!(odd.subject(), "Leaked client secret: ??x?y?");
        let long = "c".repeat(300);
        let subject = leak(&long, LeakAction::Revoke, true).subject();
        assert_eq!(subject.len(), 99);
        assert!(subject.starts_with("Leaked client secret: ccc"));
    }

    #[test]
    fn the_message_says_what_was_done_and_what_to_do() {
        let message = leak("svc", LeakAction::Disable, true).message();
        for expected in [
            "GitLab secret detection",
            "Client: svc",
            "Secret id: s1",
            "Found at: https://gitlab.example/o/r/-/blob/main/.env",
            "the client was disabled",
            "tokenctl clients enable svc",
            "#undoing-a-revocation-that-was-a-mistake",
        ] {
            assert!(message.contains(expected), "{expected:?} not in {message}");
        }
        assert!(
            leak("svc", LeakAction::Disable, false)
                .message()
                .contains("already disabled")
        );
        assert!(
            leak("svc", LeakAction::Report, false)
                .message()
                .contains("the secret still works")
        );
    }
}
