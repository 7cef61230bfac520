//! The audit commands: `audit` (records), `audit report`, and `clients stats`.

use time::Duration;
use token_service::admin::{Admin, parse_duration};
use token_service::audit::report::{self, ReportOptions};
use token_service::audit::stats::client_stats;
use token_service::audit::{AuditQuery, AuditRecord};

use crate::args::{AuditArgs, AuditCommand, AuditSubcommand, ReportArgs};
use crate::commands::{CliResult, ago};
use crate::views::{print_json, print_record, print_report, print_stats};

/// The longest time a report reads back (baseline and period): far beyond any retention.
const MAX_LOOKBACK: Duration = Duration::days(3660);

/// `audit` and `audit report`.
pub async fn audit(admin: &Admin, json: bool, cmd: AuditCommand) -> CliResult {
    match cmd.report {
        Some(AuditSubcommand::Report(args)) => audit_report(admin, json, args).await,
        None => list(admin, json, cmd.list).await,
    }
}

/// `clients stats`: one client's requests by outcome.
pub async fn stats(admin: &Admin, json: bool, client_id: &str, since: &str) -> CliResult {
    let since = ago(admin, since)?;
    let stats = client_stats(admin.audit.as_ref(), client_id, since).await?;
    if json {
        return print_json(&stats);
    }
    print_stats(&stats);
    Ok(())
}

async fn list(admin: &Admin, json: bool, args: AuditArgs) -> CliResult {
    let since = args.since.map(|t| ago(admin, &t)).transpose()?;
    let until = args.until.map(|t| ago(admin, &t)).transpose()?;
    let records: Vec<AuditRecord> = admin
        .audit
        .query(&AuditQuery {
            client_id: args.client,
            since,
            until,
            outcome: if args.admin {
                Some("admin".to_owned())
            } else {
                args.outcome
            },
            limit: args.limit,
        })
        .await?;
    if json {
        return print_json(&records);
    }
    for r in &records {
        print_record(r);
    }
    Ok(())
}

async fn audit_report(admin: &Admin, json: bool, args: ReportArgs) -> CliResult {
    let period = parse_duration(&args.since)
        .filter(|d| d.is_positive())
        .ok_or_else(|| format!("invalid period {:?} (use e.g. 1h, 24h, 7d)", args.since))?;
    let lookback = i32::try_from(args.baseline_periods)
        .ok()
        .and_then(|n| n.checked_add(1))
        .and_then(|n| period.checked_mul(n));
    if lookback.is_none_or(|d| d > MAX_LOOKBACK) {
        return Err("the period times (--baseline-periods + 1) must stay within 10 years".into());
    }
    if !(args.jump_factor.is_finite() && args.jump_factor >= 0.0) {
        return Err("--jump-factor must be a number of at least 0".into());
    }
    if args.include_unknown {
        eprintln!(
            "tokenctl: --include-unknown is no longer needed and is ignored: the report always \
             reads ids that are no client, through the failure index"
        );
    }
    let options = ReportOptions {
        baseline_periods: args.baseline_periods,
        jump_factor: args.jump_factor,
        jump_min: args.jump_min,
        spray_min_clients: args.spray_min_clients,
        ..ReportOptions::new(period)
    };
    let report = report::build(
        admin.clients.as_ref(),
        admin.audit.as_ref(),
        admin.clock.as_ref(),
        &options,
    )
    .await?;
    if json {
        return print_json(&report);
    }
    print_report(&report);
    Ok(())
}
