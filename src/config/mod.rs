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
use std::time::Duration;

use chrono::NaiveDateTime;
use serde::Deserialize;

mod pipeline;
use pipeline::check_pipeline;
mod schedule;
mod secret_source;

use crate::bytesize;
pub use crate::secret::Auth;
use crate::sources::{SourceKind, SourceOptions};
pub use schedule::{longest_gap, next_tick, ticks_between, Schedule};
pub use secret_source::{SecretSource, SECRET_FILE_LIMIT};

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

/// Auth as configured: key name → where its secret comes from.
pub type AuthSpec = BTreeMap<String, SecretSource>;

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub database_path: PathBuf,
    /// `[database] url` (and its password): PostgreSQL instead of the file at `database_path`.
    pub database_url: Option<DatabaseUrl>,
    pub daemon: DaemonConfig,
    pub pipelines: Vec<Pipeline>,
}

/// A PostgreSQL database as configured: its URL (no password in it) and where the password comes
/// from (`PGPASSWORD` when the config names none).
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    pub url: String,
    pub password: Option<SecretSource>,
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
    /// How many windows a run reads at once (backfills, rescans, long first syncs).
    pub concurrency: u32,
    /// The most bytes one answer may have, on the wire and inflated.
    pub max_body: u64,
    /// Requests a second the pipeline may send upstream, all its runs in a process together
    /// (`crate::budget`); `None`: no limit.
    pub max_rps: Option<f64>,
    /// Scheduled re-reads of the recent past on their own track; `None` when off.
    pub rescan: Option<Rescan>,
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

/// A pipeline's scheduled re-read (`rescan`, `rescan_schedule`): how far back, and when.
#[derive(Debug, Clone)]
pub struct Rescan {
    pub since: Duration,
    pub schedule: Schedule,
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
    url: Option<String>,
    password: Option<toml::Value>,
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
    "concurrency",
    "max_body",
    "max_rps",
    "rescan",
    "rescan_schedule",
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
        let (database_path, database_url) = database(raw.database)?;
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
            database_url,
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

/// `[database]`: a file (`path`, default `ordersync.db`) or a PostgreSQL URL (`url`, with
/// `password` as a secret), never both.
fn database(raw: Option<RawDatabase>) -> Result<(PathBuf, Option<DatabaseUrl>), ConfigError> {
    let Some(raw) = raw else {
        return Ok(("ordersync.db".into(), None));
    };
    let key_error = |key: &str, problem: String| ConfigError::new(None, Some(key), problem);
    let password = match &raw.password {
        None => None,
        Some(_) if raw.url.is_none() => {
            return Err(key_error(
                "database.password",
                "is the password of a PostgreSQL `url`, and [database] has none".into(),
            ))
        }
        Some(value) => {
            Some(SecretSource::from_toml(value).map_err(|e| key_error("database.password", e))?)
        }
    };
    let url = match raw.url {
        Some(_) if raw.path.is_some() => {
            return Err(key_error(
                "database.url",
                "and `path` are both given; ordersync writes to one database: keep one".into(),
            ))
        }
        Some(url) => {
            crate::store::pg::PgTarget::new(&url, None)
                .map_err(|e| key_error("database.url", e.to_string()))?;
            Some(DatabaseUrl { url, password })
        }
        None => None,
    };
    Ok((
        raw.path.unwrap_or_else(|| "ordersync.db".into()).into(),
        url,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
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
    fn a_postgres_database_is_a_url_with_its_password_apart() {
        let pg = |database: &str| parse(&GOOD.replace("path = \"x.db\"", database));
        let c =
            pg("url = \"postgres://u@db.internal:5432/orders\"\npassword = { env = \"PGPASS\" }")
                .unwrap();
        let url = c.database_url.unwrap();
        assert_eq!(url.url, "postgres://u@db.internal:5432/orders");
        assert!(matches!(url.password, Some(SecretSource::Env(ref n)) if n == "PGPASS"));
        for (database, key, says) in [
            (
                "path = \"a.db\"\nurl = \"postgres://u@h:5432/d\"",
                "database.url",
                "both given",
            ),
            ("password = \"pw\"", "database.password", "has none"),
            (
                "url = \"postgres://u:SeCrEt@h:5432/d\"",
                "database.url",
                "carries a password",
            ),
            ("url = \"mysql://u@h/d\"", "database.url", "postgres://"),
        ] {
            let e = pg(database).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{database}");
            assert!(e.to_string().contains(says), "{e}");
            assert!(!e.to_string().contains("SeCrEt"), "{e}");
        }
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
    fn rescan_is_off_unless_set_and_its_schedule_defaults_to_the_night() {
        assert!(parse(GOOD).unwrap().pipelines[0].rescan.is_none());
        let on = parse(&GOOD.replace("page_size = 40", "rescan = \"15d\"")).unwrap();
        let r = on.pipelines[0].rescan.as_ref().unwrap();
        assert_eq!(r.since, Duration::from_secs(15 * 86_400));
        assert_eq!(r.schedule.text, "30 4 * * *");
        // From [defaults], with its own schedule.
        let defaulted = parse(&GOOD.replace(
            "lookback = \"1h\"",
            "rescan = \"30d\"\nrescan_schedule = \"0 3 * * *\"",
        ))
        .unwrap();
        let r = defaulted.pipelines[0].rescan.as_ref().unwrap();
        assert_eq!(
            (r.since.as_secs(), r.schedule.text.as_str()),
            (30 * 86_400, "0 3 * * *")
        );
        for (bad, key) in [
            ("rescan = \"0s\"", "rescan"),
            ("rescan = \"soon\"", "rescan"),
            (
                "rescan = \"15d\"\nrescan_schedule = \"nightly\"",
                "rescan_schedule",
            ),
            ("rescan_schedule = \"0 3 * * *\"", "rescan_schedule"),
        ] {
            let e = parse(&GOOD.replace("page_size = 40", bad)).unwrap_err();
            assert_eq!(
                (e.pipeline.as_deref(), e.key.as_deref()),
                (Some("ve"), Some(key)),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_snapshot_pipeline_refuses_its_own_rescan_and_ignores_a_default_one() {
        let sxt = |extra: &str, defaults: &str| {
            parse(&format!(
                "[defaults]\n{defaults}\n[[pipeline]]\nname = \"ad\"\nsource = \"sxt\"\n\
                 endpoint = \"http://127.0.0.1:1/x\"\nstart = \"2024-01-01\"\n{extra}\n\
                 [pipeline.auth]\nuser_id = \"u\"\ndy_uid = \"d\"\n"
            ))
        };
        let e = sxt("rescan = \"15d\"", "").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("rescan"));
        assert!(e.to_string().contains("snapshot"), "{e}");
        let c = sxt("", "rescan = \"15d\"\nrescan_schedule = \"0 3 * * *\"").unwrap();
        assert!(c.pipelines[0].rescan.is_none());
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
    fn max_rps_is_off_unless_set_here_or_in_defaults_and_takes_integers_and_fractions() {
        assert_eq!(parse(GOOD).unwrap().pipelines[0].max_rps, None);
        let own = parse(&GOOD.replace("page_size = 40", "max_rps = 20")).unwrap();
        assert_eq!(own.pipelines[0].max_rps, Some(20.0));
        let defaulted = parse(&GOOD.replace("lookback = \"1h\"", "max_rps = 0.5")).unwrap();
        assert_eq!(defaulted.pipelines[0].max_rps, Some(0.5));
        for bad in ["0", "-3", "0.0", "1e9", "nan", "inf", "\"20\"", "true"] {
            let e =
                parse(&GOOD.replace("page_size = 40", &format!("max_rps = {bad}"))).unwrap_err();
            assert_eq!(
                (e.pipeline.as_deref(), e.key.as_deref()),
                (Some("ve"), Some("max_rps")),
                "{bad}"
            );
            let shown = e.to_string();
            assert!(
                shown.contains("like 20 or 0.5") && !shown.contains('\n'),
                "{shown}"
            );
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let twice = format!("{GOOD}\n{}", &GOOD[GOOD.find("[[pipeline]]").unwrap()..]);
        let e = parse(&twice).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("name"));
    }
}
