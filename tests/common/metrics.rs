//! The daemon's HTTP side: a free loopback port, a bare `GET` (or another method), and a strict
//! reader of the Prometheus text exposition it serves.

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// One `GET` over a fresh connection: status and body, or `None` when nothing answers within 5 s.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path).map(|(status, _, body)| (status, body))
}

/// One request with no body over a fresh connection: status, header lines (lower-cased names)
/// and body, or `None` when nothing answers within 5 s.
pub fn http_request(port: u16, method: &str, path: &str) -> Option<(u16, Vec<String>, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let headers = head
        .lines()
        .skip(1)
        .map(|l| match l.split_once(':') {
            Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
            None => l.to_string(),
        })
        .collect();
    Some((status, headers, body.to_string()))
}

/// One sample: metric name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Parses Prometheus text exposition (format 0.0.4) by the format's rules; panics on a line or an
/// order that breaks them. Beyond each line's syntax: every family's lines form one group, its
/// `# TYPE` comes before its first sample, and a sample belongs to the family of the `# HELP`/
/// `# TYPE` lines just above it — so a sample can never be read as part of another family (or as
/// untyped, as a client parser reads a sample that follows another family's `# TYPE`).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    struct Family {
        name: String,
        has_help: bool,
        has_type: bool,
        samples: usize,
    }
    let mut out = Vec::new();
    let mut current: Option<Family> = None;
    let mut finished: Vec<String> = Vec::new();
    let valid_name = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (kind, name) = match words.as_slice() {
                [kind @ ("HELP" | "TYPE"), name, ..] => (*kind, *name),
                _ => panic!("bad comment line {line:?}"),
            };
            assert!(valid_name(name), "bad metric name in {line:?}");
            if current.as_ref().is_none_or(|f| f.name != name) {
                if let Some(done) = current.take() {
                    finished.push(done.name);
                }
                assert!(
                    !finished.iter().any(|f| f == name),
                    "family {name} appears in two groups: {line:?}"
                );
                current = Some(Family {
                    name: name.to_string(),
                    has_help: false,
                    has_type: false,
                    samples: 0,
                });
            }
            let family = current.as_mut().expect("set above");
            if kind == "HELP" {
                assert!(!family.has_help, "second HELP line for {name}");
                family.has_help = true;
            } else {
                assert!(
                    words.len() == 3
                        && ["counter", "gauge", "histogram", "summary", "untyped"]
                            .contains(&words[2]),
                    "bad TYPE line {line:?}"
                );
                assert!(!family.has_type, "second TYPE line for {name}");
                assert_eq!(family.samples, 0, "TYPE of {name} after its samples");
                family.has_type = true;
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let labels = inner
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label: {line:?}"));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), Vec::new()),
        };
        assert!(valid_name(&name), "bad metric name {name:?}");
        match current.as_mut() {
            Some(f) if f.name == name => {
                assert!(f.has_type, "sample of {name} before its TYPE line");
                f.samples += 1;
            }
            Some(f) => panic!(
                "sample {line:?} follows the HELP/TYPE of {}: a parser reads it as untyped",
                f.name
            ),
            None => panic!("sample {line:?} before any TYPE line"),
        }
        out.push((name, labels, value));
    }
    out
}

/// The value of the first sample of `name` carrying all of `labels`.
pub fn metric(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    all.iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}
