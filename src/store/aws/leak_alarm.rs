//! The alarm of the AWS shape: each leaked secret is published to the stack's alarm topic
//! (SNS), besides the log warning of [`LogAlarm`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_sns::error::DisplayErrorContext;

use crate::scanning::{Leak, LeakAlarm, LogAlarm};

/// After a failed publish, the next ones are not tried for this long: the rest of a report
/// (the function's 10 s timeout) then does not wait on a stalled SNS once per leaked secret.
pub const QUIET_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// Publishes one notification per leaked secret to `topic_arn`: subject and text from
/// [`Leak::subject`] and [`Leak::message`], never the secret or its digest.
///
/// The client is the shape's bounded one ([`crate::shapes::aws::bounded_sdk_config`]: one
/// publish takes at most `OPERATION_TIMEOUT`). A publish that fails is logged and counted
/// (metric `leak_notifications_failed`) and the report goes on: its audit record and action are
/// already done, and the `leaked-secret` alarm watches the `leaked_secrets` metric regardless.
pub struct SnsLeakAlarm {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    failed_at: Mutex<Option<Instant>>,
}

impl SnsLeakAlarm {
    /// The alarm publishing to `topic_arn` through `client`.
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
            failed_at: Mutex::new(None),
        }
    }

    fn quiet(&self) -> bool {
        let failed_at = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        failed_at.is_some_and(|at| at.elapsed() < QUIET_AFTER_FAILURE)
    }

    fn set_failed(&self, failed: bool) {
        let mut failed_at = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        *failed_at = failed.then(Instant::now);
    }
}

#[async_trait::async_trait]
impl LeakAlarm for SnsLeakAlarm {
    async fn leaked(&self, leak: &Leak<'_>) {
        LogAlarm.leaked(leak).await;
        if self.quiet() {
            metrics::counter!("leak_notifications_failed").increment(1);
            tracing::error!(
                client_id = leak.client_id,
                secret_id = leak.secret_id,
                "leak notification not published: the alarm topic failed moments ago"
            );
            return;
        }
        let sent = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(leak.subject())
            .message(leak.message())
            .send()
            .await;
        match sent {
            Ok(_) => self.set_failed(false),
            Err(e) => {
                self.set_failed(true);
                metrics::counter!("leak_notifications_failed").increment(1);
                tracing::error!(
                    error = %DisplayErrorContext(e),
                    client_id = leak.client_id,
                    secret_id = leak.secret_id,
                    "leak notification not published to the alarm topic"
                );
            }
        }
    }
}
