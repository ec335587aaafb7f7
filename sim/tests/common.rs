//! What the simulator tests share: one HTTP client, the [`Reply`] it reads back (status, headers,
//! body), a request with its parameters in the query string, and the `ordersync-sim` binary started
//! as a child. What a reply's body code means is each API's own: its module reads it.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// An answer as it came: HTTP status, headers, and the body's bytes.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// Reads the whole answer.
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The integer at `key` of the JSON body (an API's status code); panics if it is not one.
    pub fn int(&self, key: &str) -> i64 {
        let v = self.json();
        v[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{key} is not an integer: {v}"))
    }

    /// The body's `msg`, or `""`.
    pub fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or_default().to_string()
    }

    /// The body as text, a byte that is not UTF-8 read as U+FFFD.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as text; panics unless it is UTF-8.
    pub fn utf8(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8")
    }
}

/// One request to `url` with `params` in the query string.
pub async fn send<P: Serialize + ?Sized>(url: &str, method: Method, params: &P) -> Reply {
    let resp = client()
        .request(method, url)
        .query(params)
        .send()
        .await
        .expect("request");
    Reply::read(resp).await
}

/// Starts `ordersync-sim <args>` (`args[0]` the source) and reads the endpoint from the first line
/// it prints, `<source> <endpoint>`. The caller kills the child.
pub fn start_binary(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordersync-sim"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the simulator");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read a line");
    let endpoint = line
        .trim()
        .strip_prefix(&format!("{} ", args[0]))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, endpoint)
}
