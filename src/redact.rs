//! Redaction: what may be shown of a URL or a message once secrets have been near it.
//!
//! Every URL is passed through [`Redactor::url`] before it reaches a log line or an error, and every
//! upstream message through [`Redactor::scrub`], which replaces any configured secret value wherever
//! it appears (upstreams like to echo the key back).

use url::Url;

use crate::secret::Secret;

/// Query parameters whose values are never shown, whatever they hold.
const SENSITIVE_PARAMS: &[&str] = &[
    "vekey",
    "apkey",
    "dou_key",
    "app_key",
    "appkey",
    "app_secret",
    "secret",
    "session",
    "sign",
    "access_token",
    "token",
    "key",
    "user_id",
    "dy_uid",
    "password",
];

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        Redactor {
            // Very short values would blank out ordinary text; nobody's key is two characters.
            secrets: secrets
                .into_iter()
                .filter(|s| s.expose().len() >= 3)
                .cloned()
                .collect(),
        }
    }

    /// The URL with sensitive query values replaced by `***`.
    pub fn url(&self, url: &Url) -> String {
        let mut shown = url.clone();
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let hide = SENSITIVE_PARAMS.contains(&k.to_ascii_lowercase().as_str())
                        || self.secrets.iter().any(|s| v.contains(s.expose()));
                    (
                        k.into_owned(),
                        if hide {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        },
                    )
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let _ = shown.set_password(None);
        self.scrub(shown.as_str())
    }

    /// Whether `text` holds any secret value.
    pub fn reveals(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(s.expose()))
    }

    /// The text with every secret value replaced by `***`, on one line (upstream messages may carry
    /// newlines; an error is one sentence).
    pub fn scrub(&self, text: &str) -> String {
        let mut out: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_and_secret_values_are_hidden() {
        let key = Secret::new("V123M56");
        let r = Redactor::new([&key]);
        let u = Url::parse(
            "http://api.veapi.cn/douke/csj_ordersearch?vekey=V123M56&size=50&x=aV123M56b",
        )
        .unwrap();
        let shown = r.url(&u);
        assert!(!shown.contains("V123M56"), "{shown}");
        assert!(
            shown.contains("size=50") && shown.contains("vekey=***"),
            "{shown}"
        );
        assert_eq!(r.scrub("bad key V123M56!"), "bad key ***!");
        assert_eq!(r.scrub("two\nlines\r"), "two lines ");
    }
}
