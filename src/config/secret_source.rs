//! Where a secret comes from (`{ env = … }`, `{ file = … }`, a literal) and how it is read: a
//! secret file is at most [`SECRET_FILE_LIMIT`] of UTF-8 text; `${CREDENTIALS_DIRECTORY}` is
//! expanded for systemd's `LoadCredential=`.

use std::fmt;

use crate::secret::Secret;

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
    pub(super) fn from_toml(value: &toml::Value) -> Result<Self, String> {
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
