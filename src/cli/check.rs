//! `ordersync check`: the config and every secret checked without network, and with `--online`
//! one small request per pipeline.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::{runtime, select_with_auth, Context, Failure};
use crate::budget::RequestBudget;
use crate::config::{Auth, Pipeline};
use crate::http::{Http, RetryPolicy, Upstream};
use crate::redact::Redactor;
use crate::sources::{self, Axis, PageQuery};
use crate::timefmt;

pub(super) fn check_command(
    ctx: &Context,
    pipelines: &[String],
    online: bool,
) -> Result<ExitCode, Failure> {
    let selected = select_with_auth(&ctx.config, pipelines)?;
    if online && runtime()?.block_on(check_online(&selected)) {
        return Ok(ExitCode::from(2));
    }
    println!(
        "{}: valid; {} pipeline(s) configured, {} checked with secrets resolved{}",
        ctx.config_path.display(),
        ctx.config.pipelines.len(),
        selected.len(),
        if online {
            " and upstream answering"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// One small request per pipeline (the last settled minute, one row). True when any failed.
async fn check_online(selected: &[(Pipeline, Auth)]) -> bool {
    let http = match Http::new() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ordersync: cannot build the HTTP client: {e}");
            return true;
        }
    };
    let cancel = CancellationToken::new();
    let mut failed = false;
    for (p, auth) in selected {
        let end =
            timefmt::beijing_now() - chrono::Duration::from_std(p.settle_lag).unwrap_or_default();
        let window = crate::planner::Window {
            start: end - chrono::Duration::minutes(1),
            end,
        };
        let query = PageQuery {
            endpoint: &p.endpoint,
            auth,
            options: &p.options,
            window,
            cursor: sources::first_cursor(p.source()),
            page_size: 1,
            axis: Axis::Live,
            start: p.start,
        };
        let policy = RetryPolicy {
            max_retries: 1,
            initial: p.retry_initial,
            max_interval: p.retry_initial,
            timeout: p.timeout,
            max_body: p.max_body,
        };
        let result = http
            .fetch(
                || sources::build_request(&query),
                &Upstream {
                    retry: &policy,
                    redactor: &Redactor::new(auth.values()),
                    budget: &RequestBudget::new(p.max_rps, 1),
                },
                &cancel,
                &mut Default::default(),
                |s, b| sources::parse_page(&query, s, b),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e.to_string());
        if let Err(e) = result {
            eprintln!("ordersync: pipeline `{}`: {e}", p.name);
            failed = true;
        }
    }
    failed
}
