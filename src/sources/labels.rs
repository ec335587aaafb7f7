//! The `code` label of `ordersync_upstream_errors_total`: an upstream error's code mapped to a closed
//! set per source, so that what an upstream sends can neither add series without limit nor echo
//! anything (a key) into the metrics.

use super::{damaijia, miaoyouquan, sxt, unidesk, veapi, SourceKind};

/// Codes ordersync gives failures of its own making, whatever the source: the transport (reqwest's
/// error kinds, a body over the size cap, a redirect refused), a body not in the documented shape,
/// page drift, a corrupt saved cursor, a config the request cannot be built from.
const OWN_CODES: &[&str] = &[
    "timeout",
    "connect",
    "body",
    "network",
    "malformed",
    "drift",
    "cursor",
    "config",
    "body_too_large",
    "redirect",
];

/// The `code` label of `ordersync_upstream_errors_total` for an upstream error's code: one of a
/// closed set per source — that source's known codes, ordersync's own codes, `HTTP 429`,
/// `HTTP 5xx`, `HTTP 4xx` — and `other` for anything else. A code is whatever text an upstream
/// sends, so used as a label it would add one series per distinct value without limit, and could
/// echo anything into the metrics (a key included). The error itself (the run's error, the log)
/// keeps the code as sent.
pub fn metric_label(kind: SourceKind, code: &str) -> &'static str {
    let known = match kind {
        SourceKind::Veapi => one_of(veapi::METRIC_CODES, code),
        SourceKind::Miaoyouquan => one_of(miaoyouquan::METRIC_CODES, code),
        SourceKind::Unidesk => unidesk::metric_code(code),
        SourceKind::Damaijia => one_of(damaijia::METRIC_CODES, code),
        SourceKind::Sxt => one_of(sxt::METRIC_CODES, code),
    };
    known
        .or_else(|| http_status_label(code))
        .or_else(|| one_of(OWN_CODES, code))
        .unwrap_or("other")
}

/// `HTTP 429` as itself, any other `HTTP 4xx` or `HTTP 5xx` status as its class.
fn http_status_label(code: &str) -> Option<&'static str> {
    let status = code.strip_prefix("HTTP ")?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if status == "429" {
        return Some("HTTP 429");
    }
    match status.as_bytes()[0] {
        b'4' => Some("HTTP 4xx"),
        b'5' => Some("HTTP 5xx"),
        _ => None,
    }
}

/// `code` as the `'static` entry of `known` it equals.
pub fn one_of(known: &'static [&'static str], code: &str) -> Option<&'static str> {
    known.iter().find(|k| **k == code).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_labels_its_own_codes_as_sent() {
        for (kind, codes) in [
            (SourceKind::Veapi, veapi::METRIC_CODES),
            (SourceKind::Miaoyouquan, miaoyouquan::METRIC_CODES),
            (SourceKind::Unidesk, unidesk::METRIC_CODES),
            (SourceKind::Damaijia, damaijia::METRIC_CODES),
            (SourceKind::Sxt, sxt::METRIC_CODES),
        ] {
            assert!(!codes.is_empty(), "{kind}");
            for code in codes {
                assert_eq!(metric_label(kind, code), *code, "{kind}");
            }
        }
        assert_eq!(metric_label(SourceKind::Veapi, "10001"), "10001");
        assert_eq!(metric_label(SourceKind::Veapi, "10009"), "10009");
        assert_eq!(metric_label(SourceKind::Miaoyouquan, "-1"), "-1");
        assert_eq!(metric_label(SourceKind::Miaoyouquan, "401"), "401");
        assert_eq!(metric_label(SourceKind::Damaijia, "302"), "302");
        assert_eq!(metric_label(SourceKind::Sxt, "429"), "429");
        assert_eq!(
            metric_label(SourceKind::Unidesk, "TOP 41/isv.invalid-parameter"),
            "TOP 41"
        );
        assert_eq!(
            metric_label(
                SourceKind::Unidesk,
                "TOP 7/accesscontrol.limited-by-app-access-count"
            ),
            "TOP 7"
        );
    }

    #[test]
    fn a_code_another_source_knows_is_other() {
        assert_eq!(metric_label(SourceKind::Veapi, "302"), "other");
        assert_eq!(metric_label(SourceKind::Sxt, "10001"), "other");
        assert_eq!(metric_label(SourceKind::Damaijia, "-1"), "other");
        assert_eq!(metric_label(SourceKind::Miaoyouquan, "TOP 7"), "other");
        assert_eq!(metric_label(SourceKind::Unidesk, "429"), "other");
    }

    #[test]
    fn http_statuses_are_labelled_by_class_but_429() {
        for kind in SourceKind::ALL {
            assert_eq!(metric_label(kind, "HTTP 429"), "HTTP 429");
            for status in ["HTTP 500", "HTTP 502", "HTTP 503", "HTTP 599"] {
                assert_eq!(metric_label(kind, status), "HTTP 5xx", "{status}");
            }
            for status in ["HTTP 400", "HTTP 401", "HTTP 404", "HTTP 451"] {
                assert_eq!(metric_label(kind, status), "HTTP 4xx", "{status}");
            }
            for odd in [
                "HTTP 302",
                "HTTP 200",
                "HTTP 5000",
                "HTTP 5x",
                "HTTP 50",
                "HTTP",
                "HTTP  503",
            ] {
                assert_eq!(metric_label(kind, odd), "other", "{odd}");
            }
        }
    }

    #[test]
    fn ordersyncs_own_codes_are_labelled_as_they_are() {
        for kind in SourceKind::ALL {
            for code in OWN_CODES {
                assert_eq!(metric_label(kind, code), *code, "{kind}");
            }
        }
    }

    #[test]
    fn anything_else_is_other() {
        for kind in SourceKind::ALL {
            for code in [
                "",
                "other-thing",
                "SeCrEt-vekey-8d3f21",
                "10001 ",
                "TOP 7x",
                "TOP 99",
                "TOP unknown",
                "Timeout",
                "timeout\n",
                "\"10001\"",
            ] {
                assert_eq!(metric_label(kind, code), "other", "{kind} {code:?}");
            }
        }
    }
}
