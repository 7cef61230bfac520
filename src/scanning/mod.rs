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

/// Who hears of a leak besides the audit trail (the alarm topic on AWS, the log locally).
#[async_trait::async_trait]
pub trait LeakAlarm: Send + Sync {
    /// A secret of `client_id` was reported leaked at `url`. Never given the secret.
    async fn leaked(&self, program: Program, client_id: &str, url: &str);
}

/// The alarm of the embedded shape: a warning in the log.
pub struct LogAlarm;

#[async_trait::async_trait]
impl LeakAlarm for LogAlarm {
    async fn leaked(&self, program: Program, client_id: &str, url: &str) {
        tracing::warn!(
            program = program.as_str(),
            client_id,
            url,
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
        self.alarm.leaked(program, &client.client_id, &url).await;
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
