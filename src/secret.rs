//! `Secret`: a credential value that never prints itself; `Auth`: a pipeline's resolved secrets.
//!
//! Every key, token and app secret read from the config lives in a `Secret` from the moment it is
//! resolved. `Debug` and `Display` show `***`, so a secret cannot reach a log line, an error message
//! or `status` by accident; the only way to the value is the explicit [`Secret::expose`].

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The plain value, for building a request. Keep the result out of logs and errors.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A pipeline's `[pipeline.auth]` with every secret resolved: key name → value. Sources read it to
/// build requests; it lives here, below both the config that resolves it and the sources.
#[derive(Debug, Clone, Default)]
pub struct Auth(BTreeMap<String, Secret>);

impl Auth {
    pub fn get(&self, key: &str) -> Option<&Secret> {
        self.0.get(key)
    }

    pub fn values(&self) -> impl Iterator<Item = &Secret> {
        self.0.values()
    }
}

impl FromIterator<(String, Secret)> for Auth {
    fn from_iter<I: IntoIterator<Item = (String, Secret)>>(pairs: I) -> Self {
        Auth(pairs.into_iter().collect())
    }
}

/// Plain values (tests, and the literal secrets of a config).
impl<'a> FromIterator<(&'a str, &'a str)> for Auth {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Self {
        Auth(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), Secret::new(v)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("V123M56");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?} {s} {:?}", Some(&s)).contains("V123"));
        assert_eq!(s.expose(), "V123M56");
    }
}
