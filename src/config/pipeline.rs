//! One `[[pipeline]]` table checked into a [`Pipeline`]: every key read from the table or else from
//! `[defaults]`, each checked by what it is (name, source, options, endpoint, sizes, auth), every
//! error one sentence naming the pipeline and the key.

use std::time::Duration;

use super::{
    AuthSpec, ConfigError, Pipeline, Rescan, Schedule, SecretSource, DEFAULT_MAX_BODY,
    GENERAL_KEYS, MAX_BODY_RANGE, MAX_DURATION,
};
use crate::bytesize;
use crate::sources::{SourceKind, SourceOptions};
use crate::timefmt;

/// The keys of one `[[pipeline]]` table, each read from the table or else from `[defaults]`, and
/// every error naming the pipeline and the key.
struct Keys<'a> {
    name: String,
    table: &'a toml::Table,
    defaults: &'a toml::Table,
}

impl Keys<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(Some(&self.name), Some(key), message)
    }

    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.table.get(key).or_else(|| self.defaults.get(key))
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => {
                Err(self.err(key, format!("must be a string, got {}", other.type_str())))
            }
        }
    }

    fn duration(&self, key: &str, default: &str) -> Result<Duration, ConfigError> {
        let text = self.string(key)?.unwrap_or_else(|| default.to_string());
        // Bounded, so that `now − settle_lag` and `watermark − lookback` cannot overflow a date.
        timefmt::parse_duration(&text)
            .filter(|d| *d <= MAX_DURATION)
            .ok_or_else(|| {
                let what = "must be a duration like \"30s\", \"10m\" or \"2h\" (at most 36500d)";
                self.err(key, format!("{what}, got {text:?}"))
            })
    }

    fn integer(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => Ok(Some(*n)),
            Some(other) => {
                Err(self.err(key, format!("must be an integer, got {}", other.type_str())))
            }
        }
    }

    /// An integer key within `range`, `default` when absent.
    fn bounded(
        &self,
        key: &str,
        default: u32,
        range: std::ops::RangeInclusive<i64>,
        what: &str,
    ) -> Result<u32, ConfigError> {
        match self.integer(key)? {
            None => Ok(default),
            Some(n) if range.contains(&n) => Ok(n as u32),
            Some(n) => Err(self.err(
                key,
                format!(
                    "must be between {} and {}{what}, got {n}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }
}

pub(super) fn check_pipeline(
    index: usize,
    table: &toml::Table,
    defaults: &toml::Table,
) -> Result<Pipeline, ConfigError> {
    let keys = Keys {
        name: pipeline_name(index, table)?,
        table,
        defaults,
    };
    let source = source_of(&keys)?;
    let options = options_of(&keys, source)?;
    let endpoint = endpoint_of(&keys, source)?;
    let start_text = keys.string("start")?.ok_or_else(|| {
        keys.err(
            "start",
            "is missing (where the first live sync begins, e.g. \"2024-01-01\")",
        )
    })?;
    let start = timefmt::parse_user_time(&start_text).ok_or_else(|| {
        keys.err(
            "start",
            format!("must be YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, got {start_text:?}"),
        )
    })?;
    let schedule_text = keys
        .string("schedule")?
        .unwrap_or_else(|| "*/10 * * * *".to_string());
    let schedule = Schedule::parse(&schedule_text).map_err(|m| keys.err("schedule", m))?;
    let timeout = keys.duration("timeout", "30s")?;
    if timeout.is_zero() {
        return Err(keys.err("timeout", "must be more than zero"));
    }
    let max_page = source.max_page_size();
    Ok(Pipeline {
        endpoint,
        start,
        schedule,
        lookback: keys.duration("lookback", "2h")?,
        settle_lag: keys.duration("settle_lag", "30s")?,
        timeout,
        max_retries: keys.bounded("max_retries", 8, 0..=100, "")?,
        retry_initial: keys.duration("retry_initial", "500ms")?,
        page_size: keys.bounded(
            "page_size",
            max_page,
            1..=i64::from(max_page),
            &format!(" for `{source}`"),
        )?,
        concurrency: keys.bounded("concurrency", DEFAULT_CONCURRENCY, 1..=32, "")?,
        max_body: max_body_of(&keys)?,
        max_rps: max_rps_of(&keys)?,
        rescan: rescan_of(&keys, source)?,
        enabled: match keys.get("enabled") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                return Err(keys.err(
                    "enabled",
                    format!("must be true or false, got {}", other.type_str()),
                ))
            }
        },
        options,
        auth: auth_of(&keys, source)?,
        name: keys.name,
    })
}

/// The pipeline's `name`: a string of `[a-z0-9_-]+`. Until it is known, errors name the pipeline
/// by its place in the file.
fn pipeline_name(index: usize, table: &toml::Table) -> Result<String, ConfigError> {
    let unnamed =
        |message| ConfigError::new(Some(&format!("#{}", index + 1)), Some("name"), message);
    let name = match table.get("name") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => return Err(unnamed("must be a string")),
        None => return Err(unnamed("is missing")),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(ConfigError::new(
            Some(&name),
            Some("name"),
            format!("must match [a-z0-9_-]+, got {name:?}"),
        ));
    }
    Ok(name)
}

fn source_of(keys: &Keys<'_>) -> Result<SourceKind, ConfigError> {
    match keys.table.get("source") {
        Some(toml::Value::String(s)) => s.parse().map_err(|m: String| keys.err("source", m)),
        Some(_) => Err(keys.err("source", "must be a string")),
        None => Err(keys.err("source", "is missing")),
    }
}

/// The source's own options. Every key the pipeline itself has must be known: general, or an
/// option of its source; `[defaults]` may hold options of other sources.
fn options_of(keys: &Keys<'_>, source: SourceKind) -> Result<SourceOptions, ConfigError> {
    let mut option_values = toml::Table::new();
    for (key, value) in keys.table {
        if GENERAL_KEYS.contains(&key.as_str()) {
            continue;
        }
        if !source.takes_option(key) {
            return Err(keys.err(
                key,
                format!("is not a key of a `{source}` pipeline (a misspelling?)"),
            ));
        }
        option_values.insert(key.clone(), value.clone());
    }
    for (key, value) in keys.defaults {
        if !GENERAL_KEYS.contains(&key.as_str())
            && source.takes_option(key)
            && !option_values.contains_key(key)
        {
            option_values.insert(key.clone(), value.clone());
        }
    }
    SourceOptions::parse(source, &option_values).map_err(|(k, m)| keys.err(&k, m))
}

/// `endpoint`, or the source's documented one: a full http(s) URL.
fn endpoint_of(keys: &Keys<'_>, source: SourceKind) -> Result<String, ConfigError> {
    let endpoint = match keys.string("endpoint")? {
        Some(e) => e,
        None => match source.default_endpoint() {
            Some(e) => e.to_string(),
            None => {
                return Err(keys.err(
                    "endpoint",
                    format!("is required for a `{source}` pipeline (no documented default)"),
                ))
            }
        },
    };
    match url::Url::parse(&endpoint) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(endpoint),
        _ => Err(keys.err("endpoint", "must be a full http:// or https:// URL")),
    }
}

/// Windows a run reads at once unless `concurrency` says. Four requests in flight hide most of an
/// upstream's latency (a page of 50 rows parses and commits in a few ms; the answer takes 100–300 ms)
/// while asking no more of an upstream than four people paging by hand; `max_rps` caps the rate
/// where an upstream limits it. 1 reads one window after another, as before.
pub const DEFAULT_CONCURRENCY: u32 = 4;

/// When a rescan runs unless `rescan_schedule` says: at night, Beijing, when upstreams are quiet.
pub const DEFAULT_RESCAN_SCHEDULE: &str = "30 4 * * *";

/// `rescan` and `rescan_schedule`. Off when `rescan` is absent. A snapshot source (sxt) re-reads
/// everything on every sync: `rescan` in its own table is an error, one from `[defaults]` is
/// ignored for it; so is a defaulted `rescan_schedule` without a `rescan`.
fn rescan_of(keys: &Keys<'_>, source: SourceKind) -> Result<Option<Rescan>, ConfigError> {
    let own = |key: &str| keys.table.contains_key(key);
    if source.is_snapshot() {
        return match ["rescan", "rescan_schedule"].into_iter().find(|k| own(k)) {
            Some(key) => Err(keys.err(
                key,
                format!(
                    "has no use for a `{source}` pipeline: every sync reads its whole snapshot"
                ),
            )),
            None => Ok(None),
        };
    }
    if keys.get("rescan").is_none() {
        return match own("rescan_schedule") {
            true => Err(keys.err(
                "rescan_schedule",
                "is set but `rescan` (how far back to re-read, e.g. \"15d\") is not",
            )),
            false => Ok(None),
        };
    }
    let since = keys.duration("rescan", "0s")?;
    if since.is_zero() {
        return Err(keys.err("rescan", "must be more than zero (e.g. \"15d\")"));
    }
    let text = keys
        .string("rescan_schedule")?
        .unwrap_or_else(|| DEFAULT_RESCAN_SCHEDULE.to_string());
    let schedule = Schedule::parse(&text).map_err(|m| keys.err("rescan_schedule", m))?;
    Ok(Some(Rescan { since, schedule }))
}

fn max_body_of(keys: &Keys<'_>) -> Result<u64, ConfigError> {
    let what = "must be a size like \"32MB\" or \"512KB\", from 1KB to 1GB";
    match keys.get("max_body") {
        None => Ok(DEFAULT_MAX_BODY),
        Some(toml::Value::String(s)) => bytesize::parse(s)
            .filter(|n| MAX_BODY_RANGE.contains(n))
            .ok_or_else(|| keys.err("max_body", format!("{what}, got {s:?}"))),
        Some(other) => Err(keys.err("max_body", format!("{what}, got {}", other.type_str()))),
    }
}

/// `max_rps`: requests a second the pipeline may send, a number (`20`, `0.5`); `None`, no limit,
/// when absent. Bounded so that its spacing is a sane duration: at most 1000 s, at least 0.1 ms.
fn max_rps_of(keys: &Keys<'_>) -> Result<Option<f64>, ConfigError> {
    let what = "must be a number of requests a second from 0.001 to 10000, like 20 or 0.5";
    let rps = match keys.get("max_rps") {
        None => return Ok(None),
        Some(toml::Value::Integer(n)) => *n as f64,
        Some(toml::Value::Float(x)) => *x,
        Some(other) => return Err(keys.err("max_rps", format!("{what}, got {}", other.type_str()))),
    };
    match (0.001..=10_000.0).contains(&rps) {
        true => Ok(Some(rps)),
        false => Err(keys.err("max_rps", format!("{what}, got {rps}"))),
    }
}

/// `[pipeline.auth]`: exactly the keys the source knows, each a secret source, every required one
/// present. Secrets are not resolved here.
fn auth_of(keys: &Keys<'_>, source: SourceKind) -> Result<AuthSpec, ConfigError> {
    let mut spec = AuthSpec::new();
    match keys.get("auth") {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (k, v) in t {
                let src =
                    SecretSource::from_toml(v).map_err(|m| keys.err(&format!("auth.{k}"), m))?;
                spec.insert(k.clone(), src);
            }
        }
        Some(_) => return Err(keys.err("auth", "must be a table")),
    }
    for key in spec.keys() {
        if !source.auth_keys().iter().any(|(k, _)| k == key) {
            return Err(keys.err(
                &format!("auth.{key}"),
                format!(
                    "is not an auth key of `{source}` (expected {})",
                    source.auth_key_list()
                ),
            ));
        }
    }
    for (key, required) in source.auth_keys() {
        if *required && !spec.contains_key(*key) {
            return Err(keys.err(
                &format!("auth.{key}"),
                format!("is missing (`{source}` needs it)"),
            ));
        }
    }
    Ok(spec)
}
