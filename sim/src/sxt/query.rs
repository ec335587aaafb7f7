//! Reading one 随心推 request: the caller's `user_id` and `dy_uid`, and which orders
//! `select_status` asks for.
//!
//! [`parse`] either returns the states whose orders the answer lists or a [`Refusal`] carrying the
//! body code, the Chinese `msg` upstream-style, and an English reason for the violation log. It never
//! panics on any input, and no reason ever contains a value of `user_id` or `dy_uid` (they identify
//! the account, so they are treated as secrets). The credentials are checked first: a caller that
//! is not authorised learns nothing about its other parameters.

use super::{codes, selected_states};
use crate::http::Params;

/// A refused request (always HTTP 200): the body code and message, and the violation's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: i64,
    pub(crate) msg: &'static str,
    pub(crate) reason: String,
}

fn unauthorized(reason: &str) -> Refusal {
    Refusal {
        code: codes::UNAUTHORIZED,
        msg: codes::UNAUTHORIZED_MSG,
        reason: reason.to_string(),
    }
}

/// Checks a request against the account's credentials and the documented `select_status` values;
/// on success, the states whose orders the answer lists.
pub(crate) fn parse(
    params: &Params,
    user_id: &str,
    dy_uid: &str,
) -> Result<&'static [i64], Refusal> {
    for (name, want) in [("user_id", user_id), ("dy_uid", dy_uid)] {
        match params.non_empty(name) {
            None => return Err(unauthorized(&format!("{name} missing"))),
            Some(given) if given != want => {
                return Err(unauthorized(&format!("{name} is not the account's")))
            }
            Some(_) => {}
        }
    }
    let Some(text) = params.non_empty("select_status") else {
        return Err(Refusal {
            code: codes::BAD_PARAMETER,
            msg: codes::BAD_PARAMETER_MSG,
            reason: "select_status missing".to_string(),
        });
    };
    let text = text.trim();
    let states = text
        .parse::<i64>()
        .ok()
        .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(selected_states);
    states.ok_or_else(|| Refusal {
        code: codes::BAD_PARAMETER,
        msg: codes::BAD_PARAMETER_MSG,
        reason: format!("select_status={text:?} is not one of 1..=6"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::http::HeaderMap;

    fn check(query: &str) -> Result<&'static [i64], Refusal> {
        let params = Params::new(Some(query), &HeaderMap::new(), &Bytes::new());
        parse(&params, "u-secret", "d-secret")
    }

    #[test]
    fn each_select_status_names_its_states() {
        for (status, states) in [
            ("1", &[1, 3, 5, 6, 7, 8, 9, 10][..]),
            ("2", &[1][..]),
            ("3", &[7][..]),
            ("4", &[8, 9, 10][..]),
            ("5", &[6][..]),
            ("6", &[5][..]),
            (" 4 ", &[8, 9, 10][..]),
        ] {
            let q = format!("user_id=u-secret&dy_uid=d-secret&select_status={status}");
            assert_eq!(check(&q), Ok(states), "{status}");
        }
    }

    #[test]
    fn credentials_come_first_and_are_never_echoed() {
        for q in [
            "dy_uid=d-secret&select_status=1",
            "user_id=&dy_uid=d-secret&select_status=1",
            "user_id=u-secret&select_status=1",
            "user_id=u-wrong&dy_uid=d-secret",
            "user_id=u-secret&dy_uid=d-wrong&select_status=9",
            "user_id=d-secret&dy_uid=u-secret&select_status=1",
        ] {
            let r = check(q).unwrap_err();
            assert_eq!((r.code, r.msg), (401, "用户未授权"), "{q}");
            assert!(!r.reason.contains("secret") && !r.reason.contains("wrong"));
        }
    }

    #[test]
    fn select_status_missing_or_unknown_is_400() {
        for bad in [
            "",
            "&select_status=",
            "&select_status=0",
            "&select_status=7",
        ] {
            let r = check(&format!("user_id=u-secret&dy_uid=d-secret{bad}")).unwrap_err();
            assert_eq!((r.code, r.msg), (400, "参数错误:select_status"), "{bad}");
        }
        for bad in ["-1", "%2B1", "1.0", "all", "１", "99999999999999999999"] {
            let q = format!("user_id=u-secret&dy_uid=d-secret&select_status={bad}");
            let r = check(&q).unwrap_err();
            assert_eq!(r.code, 400, "{bad}");
        }
    }
}
