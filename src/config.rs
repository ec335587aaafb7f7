//! `pipelines.toml`: parsed into raw structs, then checked into a [`Config`] that is always valid.
//!
//! The invariant: once `Config::load` returns, every pipeline has a known source, a valid cron
//! schedule, sane durations and sizes, every key it was given is one it understands, and its auth
//! names every key its source needs. Secrets are *not* resolved here (so `status` works without
//! them); [`Pipeline::resolve_auth`] does that for the commands that talk to upstream. Every error is
//! one sentence naming the pipeline and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::bytesize;
pub use crate::secret::Auth;
use crate::secret::Secret;
use crate::sources::{SourceKind, SourceOptions};
use crate::timefmt;

/// A config problem, said in one sentence: which pipeline, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub pipeline: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(pipeline: Option<&str>, key: Option<&str>, message: impl Into<String>) -> Self {
        ConfigError {
            pipeline: pipeline.map(str::to_string),
            key: key.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match (&self.pipeline, &self.key) {
            (Some(p), Some(k)) => format!("pipeline `{p}`: key `{k}` {}", self.message),
            (Some(p), None) => format!("pipeline `{p}`: {}", self.message),
            (None, Some(k)) => format!("key `{k}` {}", self.message),
            (None, None) => self.message.clone(),
        };
        // One line whatever the file holds: a newline in a quoted key or name, or a multi-line
        // string value quoted back, is shown escaped.
        for c in text.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where a secret comes from. Literal strings are allowed (for tests and quick trials) but the
/// documented way is `{ env = "NAME" }` or `{ file = "PATH" }` (systemd `LoadCredential=`).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Literal(Secret),
    Env(String),
    File(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Literal(_) => f.write_str("Literal(***)"),
            SecretSource::Env(n) => write!(f, "Env({n})"),
            SecretSource::File(p) => write!(f, "File({p})"),
        }
    }
}

impl SecretSource {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(s) => Ok(SecretSource::Literal(Secret::new(s.clone()))),
            toml::Value::Table(t) if t.len() == 1 => match t.iter().next() {
                Some((k, toml::Value::String(v))) if k == "env" => Ok(SecretSource::Env(v.clone())),
                Some((k, toml::Value::String(v))) if k == "file" => {
                    Ok(SecretSource::File(v.clone()))
                }
                _ => Err("must be a string, { env = \"NAME\" } or { file = \"PATH\" }".into()),
            },
            _ => Err("must be a string, { env = \"NAME\" } or { file = \"PATH\" }".into()),
        }
    }

    /// The secret's value. `${CREDENTIALS_DIRECTORY}` in a file path is expanded, so a unit's
    /// `LoadCredential=` works with `{ file = "${CREDENTIALS_DIRECTORY}/vekey" }`.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Literal(s) => Ok(s.clone()),
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                Ok(_) => Err(format!("reads environment variable {name}, which is empty")),
                Err(_) => Err(format!(
                    "reads environment variable {name}, which is not set"
                )),
            },
            SecretSource::File(path) => {
                let path = expand_credentials_dir(path)?;
                let v = read_secret_file(&path)?;
                if v.trim().is_empty() {
                    return Err(format!("reads file {path}, which is empty"));
                }
                Ok(Secret::new(v.trim_end_matches(['\n', '\r'])))
            }
        }
    }
}

/// The most of a secret file that is read. A secret is a short key; without a cap a wrong path
/// (`/dev/zero`, a log file) would be read until memory runs out.
pub const SECRET_FILE_LIMIT: u64 = 64 * 1024;

/// The file's text, refused when longer than [`SECRET_FILE_LIMIT`] or not UTF-8.
fn read_secret_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| format!("reads file {path}, which cannot be read ({e})");
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(SECRET_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > SECRET_FILE_LIMIT {
        return Err(format!(
            "reads file {path}, which holds more than the {} KiB a secret file may hold",
            SECRET_FILE_LIMIT / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("reads file {path}, which is not UTF-8 text"))
}

fn expand_credentials_dir(path: &str) -> Result<String, String> {
    const VAR: &str = "${CREDENTIALS_DIRECTORY}";
    if !path.contains(VAR) {
        return Ok(path.to_string());
    }
    match std::env::var("CREDENTIALS_DIRECTORY") {
        Ok(dir) => Ok(path.replace(VAR, &dir)),
        Err(_) => Err(format!(
            "reads file {path}, but CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=)"
        )),
    }
}

/// Auth as configured: key name → where its secret comes from.
pub type AuthSpec = BTreeMap<String, SecretSource>;

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub database_path: PathBuf,
    pub daemon: DaemonConfig,
    pub pipelines: Vec<Pipeline>,
}

#[derive(Debug, Clone, Default)]
pub struct DaemonConfig {
    pub listen: Option<SocketAddr>,
}

/// One checked pipeline. All durations are real durations, all times Beijing.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub endpoint: String,
    pub start: NaiveDateTime,
    pub schedule: Schedule,
    pub lookback: Duration,
    pub settle_lag: Duration,
    pub timeout: Duration,
    pub max_retries: u32,
    pub retry_initial: Duration,
    pub page_size: u32,
    /// The most bytes one answer may have, on the wire and inflated.
    pub max_body: u64,
    pub enabled: bool,
    pub options: SourceOptions,
    pub auth: AuthSpec,
}

impl Pipeline {
    /// Which upstream the pipeline reads: its options say, so the two cannot disagree.
    pub fn source(&self) -> SourceKind {
        self.options.kind()
    }

    /// Resolves every secret; the error names the pipeline and the auth key.
    pub fn resolve_auth(&self) -> Result<Auth, ConfigError> {
        self.auth
            .iter()
            .map(|(key, src)| {
                src.resolve().map(|v| (key.clone(), v)).map_err(|m| {
                    ConfigError::new(Some(&self.name), Some(&format!("auth.{key}")), m)
                })
            })
            .collect()
    }
}

/// A cron schedule in Beijing time; the text is kept for display.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub text: String,
    pub cron: cron::Schedule,
}

impl Schedule {
    /// Accepts standard 5-field cron (minute hour day month weekday, Sunday = 0 or 7) and the
    /// 6-field form with seconds in front. The `cron` crate numbers weekdays 1 = Sunday, so numeric
    /// weekdays of the standard forms are translated rather than silently shifted by a day.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "must be a 5-field cron expression (or 6 with seconds), got {n} fields"
                ))
            }
        };
        let dow = translate_weekdays(rest[4])?;
        let expr = format!(
            "{seconds} {} {} {} {} {dow}",
            rest[0], rest[1], rest[2], rest[3]
        );
        let cron = cron::Schedule::from_str(&expr)
            .map_err(|e| format!("is not a valid cron expression ({e})"))?;
        Ok(Schedule {
            text: text.to_string(),
            cron,
        })
    }
}

fn translate_weekdays(field: &str) -> Result<String, String> {
    let map_one = |s: &str| -> Result<String, String> {
        match s.parse::<u8>() {
            Ok(n) if n <= 7 => Ok(((n % 7) + 1).to_string()),
            Ok(n) => Err(format!("has weekday {n}, which is not 0-7")),
            Err(_) => Ok(s.to_string()),
        }
    };
    let mut parts = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let mapped = match range.split_once('-') {
            Some((a, b)) => {
                let (na, nb) = (a.parse::<u8>(), b.parse::<u8>());
                match (na, nb) {
                    // `5-7` (Fri-Sun) becomes Fri-Sat plus Sun.
                    (Ok(a), Ok(7)) if a > 0 && step.is_none() => {
                        parts.push("1".to_string());
                        format!("{}-7", a + 1)
                    }
                    (Ok(a), Ok(b)) if a <= b && b <= 7 => format!("{}-{}", a % 7 + 1, b % 7 + 1),
                    (Ok(_), Ok(_)) => {
                        return Err(format!("has weekday range {range} that is not within 0-7"))
                    }
                    _ => format!("{}-{}", map_one(a)?, map_one(b)?),
                }
            }
            None => map_one(range)?,
        };
        parts.push(match step {
            Some(s) => format!("{mapped}/{s}"),
            None => mapped,
        });
    }
    Ok(parts.join(","))
}

// ---- raw, as written -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    database: Option<RawDatabase>,
    daemon: Option<RawDaemon>,
    #[serde(default)]
    defaults: toml::Table,
    #[serde(default)]
    pipeline: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    listen: Option<String>,
}

/// The longest duration a pipeline key may have: a hundred years.
const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// `max_body` unless a pipeline says otherwise. sxt answers a whole snapshot in one response, at
/// about 1.6 KB per ad order (the documented sample): 32 MiB holds some 20,000 of them, and is a
/// hundred times the largest page of the paged sources. A process buffers at most this much per
/// answer in flight, which keeps a hostile answer well inside 100 MB of RSS.
pub const DEFAULT_MAX_BODY: u64 = 32 * bytesize::MIB;
/// The range `max_body` may be set in: smaller cannot hold one page; larger defeats the point.
const MAX_BODY_RANGE: std::ops::RangeInclusive<u64> = bytesize::KIB..=bytesize::GIB;

/// The general keys every pipeline has; anything else is a source option, checked by the source.
const GENERAL_KEYS: &[&str] = &[
    "name",
    "source",
    "endpoint",
    "start",
    "schedule",
    "lookback",
    "settle_lag",
    "timeout",
    "max_retries",
    "retry_initial",
    "page_size",
    "max_body",
    "enabled",
    "auth",
];

impl Config {
    /// Reads and checks the file. The error is one sentence naming the file, pipeline and key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                None,
                None,
                format!("cannot read config file {}: {e}", path.display()),
            )
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            ConfigError::new(
                None,
                None,
                format!("{}: {}", path.display(), one_line(&e.to_string())),
            )
        })?;
        let database_path = raw
            .database
            .and_then(|d| d.path)
            .unwrap_or_else(|| "ordersync.db".to_string())
            .into();
        let listen = match raw.daemon.and_then(|d| d.listen) {
            None => None,
            Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    None,
                    Some("daemon.listen"),
                    format!("must be an address like 127.0.0.1:9464, got {s:?}"),
                )
            })?),
        };
        for key in raw.defaults.keys() {
            if key == "name" || key == "source" {
                return Err(ConfigError::new(
                    None,
                    Some(&format!("defaults.{key}")),
                    "cannot be defaulted: each pipeline names its own",
                ));
            }
            if !GENERAL_KEYS.contains(&key.as_str()) && !SourceKind::any_takes_option(key) {
                return Err(ConfigError::new(
                    None,
                    Some(&format!("defaults.{key}")),
                    "is not a pipeline key",
                ));
            }
        }
        let mut pipelines: Vec<Pipeline> = Vec::new();
        for (i, table) in raw.pipeline.iter().enumerate() {
            let p = check_pipeline(i, table, &raw.defaults)?;
            if pipelines.iter().any(|q| q.name == p.name) {
                return Err(ConfigError::new(
                    Some(&p.name),
                    Some("name"),
                    "is used by more than one pipeline",
                ));
            }
            pipelines.push(p);
        }
        Ok(Config {
            path: path.to_path_buf(),
            database_path,
            daemon: DaemonConfig { listen },
            pipelines,
        })
    }

    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// The named pipelines, or every enabled one when none is named.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Pipeline>, ConfigError> {
        if names.is_empty() {
            return Ok(self.pipelines.iter().filter(|p| p.enabled).collect());
        }
        names
            .iter()
            .map(|n| {
                self.pipeline(n).ok_or_else(|| {
                    ConfigError::new(
                        Some(n),
                        None,
                        format!("is not defined in {}", self.path.display()),
                    )
                })
            })
            .collect()
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

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

fn check_pipeline(
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
        max_body: max_body_of(&keys)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, FixedOffset, TimeZone, Weekday};

    const GOOD: &str = r#"
[database]
path = "x.db"
[defaults]
schedule = "*/5 * * * *"
lookback = "1h"
[[pipeline]]
name = "ve"
source = "veapi"
start = "2024-01-01"
page_size = 40
[pipeline.auth]
vekey = { env = "ORDERSYNC_TEST_NEVER_SET" }
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("pipelines.toml"))
    }

    #[test]
    fn defaults_are_inherited_and_own_keys_win() {
        let c = parse(GOOD).unwrap();
        let p = &c.pipelines[0];
        assert_eq!(p.schedule.text, "*/5 * * * *");
        assert_eq!(p.lookback, Duration::from_secs(3600));
        assert_eq!(p.settle_lag, Duration::from_secs(30));
        assert_eq!(p.page_size, 40);
        assert_eq!(p.max_retries, 8);
        assert_eq!(p.endpoint, "http://api.veapi.cn/douke/csj_ordersearch");
        assert_eq!(c.database_path, PathBuf::from("x.db"));
    }

    #[test]
    fn unknown_key_names_key_and_pipeline() {
        let e = parse(&GOOD.replace("page_size = 40", "page_sise = 40")).unwrap_err();
        assert_eq!(e.pipeline.as_deref(), Some("ve"));
        assert_eq!(e.key.as_deref(), Some("page_sise"));
        let text = e.to_string();
        assert!(
            text.contains("`ve`") && text.contains("`page_sise`"),
            "{text}"
        );
    }

    #[test]
    fn out_of_range_page_size_is_refused() {
        let e = parse(&GOOD.replace("page_size = 40", "page_size = 51")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("page_size"));
        assert!(e.to_string().contains("between 1 and 50"));
    }

    #[test]
    fn bad_cron_and_bad_duration_are_named() {
        let e = parse(&GOOD.replace("*/5 * * * *", "every five minutes")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("schedule"));
        let e = parse(&GOOD.replace("\"1h\"", "\"an hour\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("lookback"));
    }

    #[test]
    fn missing_secret_env_is_reported_without_panicking() {
        let c = parse(GOOD).unwrap();
        let e = c.pipelines[0].resolve_auth().unwrap_err();
        assert_eq!(e.key.as_deref(), Some("auth.vekey"));
        assert!(e.to_string().contains("ORDERSYNC_TEST_NEVER_SET"));
    }

    #[test]
    fn wrong_auth_key_and_missing_auth_key() {
        let e = parse(&GOOD.replace("vekey =", "ve_key =")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("auth.ve_key"));
        let e = parse(&GOOD.replace(
            "[pipeline.auth]\nvekey = { env = \"ORDERSYNC_TEST_NEVER_SET\" }",
            "",
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("auth.vekey"));
    }

    #[test]
    fn literal_secret_never_prints() {
        let c = parse(&GOOD.replace("{ env = \"ORDERSYNC_TEST_NEVER_SET\" }", "\"SUPERSECRET\""))
            .unwrap();
        assert!(!format!("{c:?}").contains("SUPERSECRET"));
        let auth = c.pipelines[0].resolve_auth().unwrap();
        assert!(!format!("{auth:?}").contains("SUPERSECRET"));
        assert_eq!(auth.get("vekey").map(Secret::expose), Some("SUPERSECRET"));
    }

    #[test]
    fn five_field_weekdays_mean_what_cron_users_mean() {
        // Standard cron: 1 = Monday. 2024-01-01 was a Monday.
        let s = Schedule::parse("0 9 * * 1").unwrap();
        let tz = FixedOffset::east_opt(8 * 3600).unwrap();
        let after = tz.with_ymd_and_hms(2023, 12, 30, 0, 0, 0).unwrap();
        let next = s.cron.after(&after).next().unwrap();
        assert_eq!(next.weekday(), Weekday::Mon);
        let s = Schedule::parse("0 9 * * 0").unwrap();
        assert_eq!(s.cron.after(&after).next().unwrap().weekday(), Weekday::Sun);
        let s = Schedule::parse("0 9 * * 5-7").unwrap();
        let days: Vec<_> = s.cron.after(&after).take(3).map(|t| t.weekday()).collect();
        // 2023-12-30 was a Saturday: Fri-Sun fires that day first.
        assert_eq!(days, vec![Weekday::Sat, Weekday::Sun, Weekday::Fri]);
        assert!(Schedule::parse("*/10 * * * * *").is_ok());
        assert!(Schedule::parse("* * *").is_err());
    }

    #[test]
    fn max_body_is_a_size_defaulted_here_or_in_defaults() {
        assert_eq!(parse(GOOD).unwrap().pipelines[0].max_body, 32 << 20);
        let own = parse(&GOOD.replace("page_size = 40", "max_body = \"512KB\"")).unwrap();
        assert_eq!(own.pipelines[0].max_body, 512 << 10);
        let defaulted = parse(&GOOD.replace("lookback = \"1h\"", "max_body = \"2MB\"")).unwrap();
        assert_eq!(defaulted.pipelines[0].max_body, 2 << 20);
        for bad in ["\"lots\"", "\"0KB\"", "\"2GB\"", "100", "true"] {
            let e =
                parse(&GOOD.replace("page_size = 40", &format!("max_body = {bad}"))).unwrap_err();
            assert_eq!(
                (e.pipeline.as_deref(), e.key.as_deref()),
                (Some("ve"), Some("max_body")),
                "{bad}"
            );
            assert!(e.to_string().contains("like \"32MB\""), "{e}");
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let twice = format!("{GOOD}\n{}", &GOOD[GOOD.find("[[pipeline]]").unwrap()..]);
        let e = parse(&twice).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("name"));
    }
}
