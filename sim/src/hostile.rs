//! Hostile answers: what an upstream written by someone else may send instead of an answer, on cue.
//!
//! Where [`crate::faults`] draws ordinary trouble at random, a [`Hostile`] mode is set by a test
//! ([`crate::Simulator::set_hostile`]) and replaces *every* answer of that simulator until it is
//! cleared with `None`. Each simulator's handler applies it with one call, right after counting the
//! request (`Ledger::hostile_answer`); a hostile answer is never a rule violation and never counted
//! as a fault. None of them holds its whole body in memory:
//! - [`Hostile::GzipBomb`]: HTTP 200, `Content-Encoding: gzip`, about 1 MB on the wire that inflates
//!   to [`BOMB_INFLATED_BYTES`] (1 GiB) of JSON — `{"data":[` then spaces. Built once per process
//!   from one deflate block of 1 MiB of spaces, repeated, so building it never inflates it.
//! - [`Hostile::HugeBody`]: HTTP 200, [`HUGE_BODY_BYTES`] (300 MiB) of the same JSON-looking text,
//!   streamed chunked with no `Content-Length` (the reader learns the size only by reading).
//! - [`Hostile::HugeBodyWithLength`]: the same body, announcing its `Content-Length` up front.
//! - [`Hostile::Redirect`]: HTTP 302 with `Location` = the given URL plus the request's own query
//!   string — keys included, as a careless upstream would send them on.
//! - [`Hostile::Html401`]: HTTP 401 with an nginx-style `text/html` page (no JSON at all).
//! - [`Hostile::Drip`]: HTTP 200 with the start of a JSON answer, then one space every
//!   [`DRIP_INTERVAL`], forever: a body that never ends.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use flate2::{Compress, Compression, Crc, FlushCompress};

use crate::http;

/// One kind of hostile answer; see the module documentation for exactly what each sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// A small gzip body that inflates to 1 GiB.
    GzipBomb,
    /// 300 MiB, chunked, no `Content-Length`.
    HugeBody,
    /// 300 MiB with its `Content-Length`.
    HugeBodyWithLength,
    /// HTTP 302 to `to` (a full URL), carrying the request's query string.
    Redirect { to: String },
    /// HTTP 401 with an HTML page.
    Html401,
    /// A body that never ends.
    Drip,
}

/// What a bomb inflates to: 1 GiB of filler after [`PREFIX`].
pub const BOMB_INFLATED_BYTES: u64 = PREFIX.len() as u64 + (BOMB_CHUNKS as u64) * (CHUNK as u64);
/// What a huge body is: 300 MiB of filler after [`PREFIX`].
pub const HUGE_BODY_BYTES: u64 = PREFIX.len() as u64 + (HUGE_CHUNKS as u64) * (FILLER as u64);
/// How often a drip sends its next byte.
pub const DRIP_INTERVAL: Duration = Duration::from_millis(100);

/// How every hostile body starts: the opening of a JSON answer, so only its size gives it away.
const PREFIX: &[u8] = b"{\"data\":[";
/// Bytes of spaces one deflate block of the bomb inflates to (1 MiB).
const CHUNK: usize = 1 << 20;
const BOMB_CHUNKS: usize = 1024;
/// Bytes of spaces in one streamed chunk of a huge body.
const FILLER: usize = 64 * 1024;
const HUGE_CHUNKS: usize = 300 * 16;

static SPACES: [u8; FILLER] = [b' '; FILLER];

impl Hostile {
    /// The answer to a request whose query string was `query`.
    pub fn answer(&self, query: Option<&str>) -> Response {
        match self {
            Hostile::GzipBomb => {
                let mut resp = http::json(Vec::new());
                *resp.body_mut() = Body::from(gzip_bomb().clone());
                resp.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                resp.headers_mut().insert(
                    header::CONTENT_LENGTH,
                    HeaderValue::from(gzip_bomb().len()),
                );
                resp
            }
            Hostile::HugeBody => huge_body(false),
            Hostile::HugeBodyWithLength => huge_body(true),
            Hostile::Redirect { to } => {
                let location = match query.filter(|q| !q.is_empty()) {
                    Some(q) if to.contains('?') => format!("{to}&{q}"),
                    Some(q) => format!("{to}?{q}"),
                    None => to.clone(),
                };
                let mut resp = http::with_type(
                    StatusCode::FOUND,
                    "text/html",
                    b"<html><body><h1>302 Found</h1></body></html>".to_vec(),
                );
                if let Ok(value) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(header::LOCATION, value);
                }
                resp
            }
            Hostile::Html401 => http::with_type(
                StatusCode::UNAUTHORIZED,
                "text/html",
                b"<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n".to_vec(),
            ),
            Hostile::Drip => {
                let drip = futures_util::stream::unfold(true, |first| async move {
                    if first {
                        return Some((Ok::<_, Infallible>(Bytes::from_static(PREFIX)), false));
                    }
                    tokio::time::sleep(DRIP_INTERVAL).await;
                    Some((Ok(Bytes::from_static(b" ")), false))
                });
                let mut resp = http::json(Vec::new());
                *resp.body_mut() = Body::from_stream(drip);
                resp.headers_mut().remove(header::CONTENT_LENGTH);
                resp
            }
        }
    }
}

/// [`HUGE_BODY_BYTES`] streamed from one static chunk, never held in memory.
fn huge_body(with_length: bool) -> Response {
    let chunks = std::iter::once(Bytes::from_static(PREFIX))
        .chain(std::iter::repeat_n(
            Bytes::from_static(&SPACES),
            HUGE_CHUNKS,
        ))
        .map(Ok::<_, Infallible>);
    let mut resp = http::json(Vec::new());
    *resp.body_mut() = Body::from_stream(futures_util::stream::iter(chunks));
    if with_length {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(HUGE_BODY_BYTES));
    } else {
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    resp
}

/// The bomb's bytes, built on first use and kept for the process (about 1 MB).
fn gzip_bomb() -> &'static Bytes {
    static BOMB: OnceLock<Bytes> = OnceLock::new();
    BOMB.get_or_init(|| Bytes::from(gzip_of_spaces(PREFIX, BOMB_CHUNKS)))
}

/// A gzip member inflating to `prefix` then `chunks` MiB of spaces, without ever holding them:
/// each part is deflated alone from a fresh state and ends on a byte boundary (a sync flush), so
/// its bytes decode the same wherever they stand, and the 1 MiB part is written `chunks` times.
/// The CRC of the whole is combined from the parts' CRCs.
fn gzip_of_spaces(prefix: &[u8], chunks: usize) -> Vec<u8> {
    let spaces = vec![b' '; CHUNK];
    let (head, head_crc) = (deflate_block(prefix), crc_of(prefix));
    let (block, block_crc) = (deflate_block(&spaces), crc_of(&spaces));
    // Header: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&head);
    let mut crc = head_crc;
    for _ in 0..chunks {
        out.extend_from_slice(&block);
        crc.combine(&block_crc);
    }
    // The last block: final, fixed Huffman, holding only its end-of-block code.
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}

fn crc_of(data: &[u8]) -> Crc {
    let mut crc = Crc::new();
    crc.update(data);
    crc
}

/// `data` as raw deflate blocks, not final, ending byte-aligned.
fn deflate_block(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 100 + 64);
    loop {
        let read = z.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve(4096);
        }
        // Compressing into a Vec with spare room cannot fail; a status error would mean a bug here.
        let _ = z.compress_vec(&data[read..], &mut out, FlushCompress::Sync);
        if z.total_in() as usize == data.len() && out.len() < out.capacity() {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_small_bomb_inflates_to_exactly_its_spaces_and_its_checksums_hold() {
        let gz = gzip_of_spaces(PREFIX, 3);
        let mut inflated = Vec::new();
        // GzDecoder checks the CRC and the length in the trailer.
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut inflated)
            .expect("a valid gzip member");
        assert_eq!(inflated.len(), PREFIX.len() + 3 * CHUNK);
        assert!(inflated.starts_with(PREFIX));
        assert!(inflated[PREFIX.len()..].iter().all(|b| *b == b' '));
    }

    #[test]
    fn the_bomb_is_small_on_the_wire_and_claims_a_gibibyte() {
        let bomb = gzip_bomb();
        assert!(bomb.len() < 2_000_000, "{} bytes", bomb.len());
        let isize = u32::from_le_bytes(bomb[bomb.len() - 4..].try_into().unwrap());
        assert_eq!(u64::from(isize), BOMB_INFLATED_BYTES % (1 << 32));
        const { assert!(BOMB_INFLATED_BYTES > 1 << 30) };
    }

    #[tokio::test]
    async fn huge_bodies_stream_past_any_small_limit_and_only_one_says_its_length() {
        let chunked = Hostile::HugeBody.answer(None);
        assert!(chunked.headers().get(header::CONTENT_LENGTH).is_none());
        let r = axum::body::to_bytes(chunked.into_body(), 10 << 20).await;
        assert!(r.is_err(), "more than 10 MiB");
        let sized = Hostile::HugeBodyWithLength.answer(None);
        assert_eq!(
            sized.headers().get(header::CONTENT_LENGTH),
            Some(&HeaderValue::from(HUGE_BODY_BYTES))
        );
    }

    #[test]
    fn a_redirect_carries_the_query_string_on() {
        let to = "http://127.0.0.1:9/elsewhere".to_string();
        let resp = Hostile::Redirect { to: to.clone() }.answer(Some("vekey=K&size=50"));
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(
            resp.headers().get(header::LOCATION).unwrap(),
            "http://127.0.0.1:9/elsewhere?vekey=K&size=50"
        );
        let resp = Hostile::Redirect {
            to: format!("{to}?a=1"),
        }
        .answer(Some("b=2"));
        assert_eq!(
            resp.headers().get(header::LOCATION).unwrap(),
            "http://127.0.0.1:9/elsewhere?a=1&b=2"
        );
    }

    #[tokio::test]
    async fn a_drip_never_ends() {
        let body = Hostile::Drip.answer(None).into_body();
        let read =
            tokio::time::timeout(DRIP_INTERVAL * 5, axum::body::to_bytes(body, usize::MAX)).await;
        assert!(read.is_err(), "still going after five intervals");
    }

    #[test]
    fn html_401_is_an_html_401() {
        let resp = Hostile::Html401.answer(None);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/html"
        );
    }
}
