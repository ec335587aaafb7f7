//! The daemon's status page `GET /` and `GET /api/status`: each pipeline's health, error, rejected
//! rows, tracks, gaps and backfill progress in the right place, all text escaped, no secret and no
//! order data on it, the same JSON as `ordersync status --json`, read-only; and the page as headless
//! Chromium renders it from a daemon that is syncing.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ordersync_sim::{Faults, Poison, Simulator};
use serde_json::Value;

use crate::common::*;

/// A key the failing pipeline is configured with, literally: it must never reach the page.
const WRONG_KEY: &str = "WrOnG-SeCrEt-key-4411";
/// A schedule that never comes due during a test (1 January, midnight): the daemon serves the
/// page and runs nothing.
const YEARLY: &str = "0 0 1 1 *";
/// The error text of a run only the database knows, with markup the page must escape.
const MARKUP_ERROR: &str = r#"upstream said <script>alert("x")</script> & left"#;

/// `pipelines` are `(name, auth value, schedule)` against the harness's veapi simulator; the
/// daemon listens on `port`.
fn write_config(h: &Harness, port: u16, pipelines: &[(&str, &str, &str)]) {
    let start = (h.now - chrono::Duration::days(h.days + 1)).format("%Y-%m-%d");
    let mut text = format!(
        "[database]\npath = \"{db}\"\n[daemon]\nlisten = \"127.0.0.1:{port}\"\n[defaults]\n\
         settle_lag = \"1s\"\nretry_initial = \"5ms\"\nmax_retries = 2\ntimeout = \"2s\"\nstart = \"{start}\"\n",
        db = h.db_path().display(),
    );
    for (name, key, schedule) in pipelines {
        text.push_str(&format!(
            "[[pipeline]]\nname = \"{name}\"\nsource = \"veapi\"\nendpoint = \"{}\"\nschedule = \"{schedule}\"\n\
             [pipeline.auth]\nvekey = {key}\n",
            h.sim.endpoint()
        ));
    }
    std::fs::write(h.config_path(), text).expect("write config");
}

const GOOD_KEY: &str = "{ env = \"TEST_VEKEY\" }";

/// The `<section>` of one pipeline on the page.
fn section<'a>(page: &'a str, pipeline: &str) -> &'a str {
    // Only a section's tag has `data-health` right after `data-pipeline`.
    let marker = format!(r#"data-pipeline="{pipeline}" data-health="#);
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no section for {pipeline}:\n{page}"));
    let start = page[..at].rfind("<section").expect("section opened");
    let end = at + page[at..].find("</section>").expect("section closed");
    &page[start..end]
}

/// The `<tr>` of one track in a pipeline's section.
fn track_row<'a>(section: &'a str, scope: &str) -> &'a str {
    let start = section
        .find(&format!(r#"<tr class="track" data-scope="{scope}">"#))
        .unwrap_or_else(|| panic!("no track {scope}:\n{section}"));
    let end = section[start..].find("</tr>").expect("row closed");
    &section[start..start + end]
}

/// `status --json` (or `/api/status`) without the lags, which move with the clock.
fn without_lags(mut v: Value) -> Value {
    for p in v.as_array_mut().expect("an array of pipelines") {
        p.as_object_mut().expect("an object").remove("lag_seconds");
    }
    v
}

#[test]
fn the_page_shows_each_health_state_the_gap_the_rejects_and_the_backfill_and_no_secret_or_order() {
    let h = Harness::veapi(300, 20, Faults::default());
    let truth = h.sim.truth();
    h.sim.poison(&truth[42].order_id, Some(Poison::BadAmount));
    let port = free_port();
    let wrong_key = format!("\"{WRONG_KEY}\"");
    write_config(
        &h,
        port,
        &[
            ("ve-ok", GOOD_KEY, YEARLY),
            ("ve-failing", &wrong_key, YEARLY),
            ("ve-stale", GOOD_KEY, YEARLY),
            ("ve-backfill", GOOD_KEY, YEARLY),
        ],
    );

    // Real runs: a good sync that meets one bad row, a sync refused for its key, a good sync and
    // a finished backfill.
    assert_ok(&h.run(&["sync", "ve-ok"]));
    let failed = h.run(&["sync", "ve-failing"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert_ok(&h.run(&["sync", "ve-backfill"]));
    let from = (h.now - chrono::Duration::days(5))
        .format("%Y-%m-%d")
        .to_string();
    let to = (h.now - chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    assert_ok(&h.run(&["backfill", "ve-backfill", "--from", &from, "--to", &to]));
    let finished_scope: String = scalar(
        &h.db(),
        "SELECT scope FROM checkpoints WHERE pipeline = 've-backfill' AND scope != 'live'",
    );

    // Staged: a success three years ago on a yearly schedule (two New Years since: stale), a
    // backfill stopped part way with a gap, a track of another kind, and a pipeline only the
    // database knows whose error carries markup.
    {
        let conn = h.db();
        stage_run(
            &conn,
            "ve-stale",
            "live",
            "ok",
            ("2021-03-01 10:00:00", "2021-03-01 10:00:09"),
            None,
        );
        stage_track(
            &conn,
            &StagedTrack {
                pipeline: "ve-stale",
                scope: "live",
                range: None,
                watermark: Some("2021-03-01 09:59:59.000"),
                window: None,
                covered: &[("2021-02-01 00:00:00.000", "2021-03-01 09:59:59.000")],
            },
        );
        let staged_backfill = "backfill 2024-01-01..2024-01-11";
        stage_track(
            &conn,
            &StagedTrack {
                pipeline: "ve-backfill",
                scope: staged_backfill,
                range: Some(("2024-01-01 00:00:00", "2024-01-11 00:00:00")),
                watermark: Some("2024-01-05 00:00:00.000"),
                window: Some(("2024-01-05 00:00:00.000", "2024-01-06 00:00:00.000")),
                covered: &[
                    ("2024-01-01 00:00:00.000", "2024-01-03 00:00:00.000"),
                    ("2024-01-04 00:00:00.000", "2024-01-05 00:00:00.000"),
                ],
            },
        );
        stage_run(
            &conn,
            "ve-backfill",
            staged_backfill,
            "interrupted",
            ("2024-06-01 10:00:00", "2024-06-01 10:05:00"),
            None,
        );
        stage_track(
            &conn,
            &StagedTrack {
                pipeline: "ve-backfill",
                scope: "rescan",
                range: Some(("2024-05-01 00:00:00", "2024-05-16 00:00:00")),
                watermark: Some("2024-05-16 00:00:00.000"),
                window: None,
                covered: &[("2024-05-01 00:00:00.000", "2024-05-16 00:00:00.000")],
            },
        );
        stage_run(
            &conn,
            "gone",
            "live",
            "failed",
            ("2024-06-01 10:00:00", "2024-06-01 10:00:01"),
            Some(MARKUP_ERROR),
        );
    }

    let d = Daemon::start(&h, port, None);
    let (status, headers, page) = http_request(port, "GET", "/").expect("/ answers");
    assert_eq!(status, 200, "{page}");
    let header = |name: &str| {
        headers
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert!(
        header("content-security-policy").starts_with("default-src 'none'"),
        "{headers:?}"
    );
    assert!(page.contains("<title>ordersync status</title>"));
    assert!(page.contains(r#"<meta http-equiv="refresh" content="30">"#));
    assert!(
        page.contains(r#"<span class="badge ok">2 ok</span>"#)
            && page.contains(r#"<span class="badge failing">1 failing</span>"#)
            && page.contains(r#"<span class="badge stale">1 stale</span>"#)
            && page.contains(r#"<span class="badge off">1 off</span>"#),
        "the counts by health"
    );

    let at = |name: &str| {
        let s = section(&page, name);
        s.as_ptr() as usize - page.as_ptr() as usize
    };
    assert!(
        at("ve-failing") < at("ve-stale")
            && at("ve-stale") < at("ve-ok")
            && at("ve-ok") < at("gone"),
        "details: failing first, then stale, ok and off"
    );

    let ok = section(&page, "ve-ok");
    assert!(ok.contains(r#"data-health="ok""#), "{ok}");
    assert!(
        ok.contains(r#"<span class="rejected">1 open</span>"#)
            && ok.contains("ordersync rejects ve-ok"),
        "the rejected row: {ok}"
    );
    assert!(ok.contains("<b>ok</b> · sync live"), "{ok}");
    assert!(
        ok.contains(" rows seen, ") && ok.contains(", 1 rejected, "),
        "{ok}"
    );

    let failing = section(&page, "ve-failing");
    assert!(failing.contains(r#"data-health="failing""#), "{failing}");
    assert!(failing.contains("the last live run failed at"), "{failing}");
    assert!(
        failing.contains(r#"<code class="error">"#) && failing.contains("10001"),
        "the upstream code in the last error: {failing}"
    );

    let stale = section(&page, "ve-stale");
    assert!(stale.contains(r#"data-health="stale""#), "{stale}");
    assert!(
        stale.contains("no successful live run since 2021-03-01 10:00:09")
            && stale.contains("2022-01-01 00:00:00")
            && stale.contains("2023-01-01 00:00:00"),
        "the reason names the ticks missed: {stale}"
    );

    let backfill = section(&page, "ve-backfill");
    assert!(backfill.contains(r#"data-health="ok""#), "{backfill}");
    let staged = track_row(backfill, "backfill 2024-01-01..2024-01-11");
    assert!(
        staged.contains("<b>in progress</b>, 30% covered"),
        "3 of 10 days covered: {staged}"
    );
    assert!(
        staged.contains(
            r#"<div class="gap mono">GAP 2024-01-03 00:00:00.000 .. 2024-01-04 00:00:00.000</div>"#
        ),
        "{staged}"
    );
    assert!(staged.contains("window in progress"), "{staged}");
    assert!(
        track_row(backfill, &finished_scope).contains("<td>finished</td>"),
        "the real backfill: {backfill}"
    );
    assert!(
        track_row(backfill, "rescan").contains("<td>finished</td>"),
        "a track of another kind is shown by its scope: {backfill}"
    );
    assert!(
        !track_row(backfill, "live").contains("GAP"),
        "the real live track has no gap"
    );

    let gone = section(&page, "gone");
    assert!(gone.contains(r#"data-health="off""#), "{gone}");
    assert!(gone.contains("not in the config"), "{gone}");
    assert!(
        gone.contains("upstream said &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; left"),
        "{gone}"
    );
    assert!(
        !page.contains("<script"),
        "markup from the database reached the page"
    );

    // The timeline and the daily chart.
    assert!(page.contains(r#"class="run ok""#) && page.contains(r#"class="run failed""#));
    assert!(page.contains(r#"<svg class="daily orders""#));
    assert!(page.contains(r#"<svg class="daily gmv""#));
    assert!(page.contains(" veapi: "), "a point of the veapi line");
    assert!(page.contains(">¥"), "GMV axis labels in yuan");

    // No secret, no order: ids, names and shops of the world appear nowhere.
    let (status, _, api) = http_request(port, "GET", "/api/status").expect("/api/status answers");
    assert_eq!(status, 200, "{api}");
    for text in [&page, &api] {
        assert!(
            !text.contains(VEKEY) && !text.contains(WRONG_KEY),
            "a secret is shown"
        );
        for o in &truth {
            for field in [
                &o.order_id,
                &o.product_name,
                &o.shop_name,
                &o.author_account,
            ] {
                assert!(
                    field.is_empty() || !text.contains(field.as_str()),
                    "order data {field:?} is shown"
                );
            }
        }
    }

    // `/api/status` is `status --json` of the same database.
    let cli = h.run(&["status", "--json"]);
    assert_ok(&cli);
    let cli: Value = serde_json::from_slice(&cli.stdout).expect("status --json is JSON");
    let served: Value = serde_json::from_str(&api).expect("/api/status is JSON");
    assert_eq!(without_lags(served.clone()), without_lags(cli));
    assert_eq!(served[2]["health"]["state"], "stale");

    // Read-only: nothing but GET is answered.
    for method in ["POST", "PUT", "DELETE"] {
        for path in ["/", "/api/status"] {
            let (status, _, _) = http_request(port, method, path).expect("answers");
            assert_eq!(status, 405, "{method} {path}");
        }
    }
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// Waits for `child` up to `within`; kills it and panics when it takes longer.
fn finish(mut child: std::process::Child, within: Duration, what: &str) -> std::process::Output {
    let deadline = Instant::now() + within;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Headless Chromium on `url` with `args`, in a fresh profile, never reaching beyond loopback.
fn chromium(profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    finish(child, Duration::from_secs(90), "chromium")
}

#[test]
fn headless_chromium_renders_the_page_of_a_running_daemon() {
    if !tool_available("chromium") {
        return;
    }
    let h = Harness::veapi(300, 20, Faults::default());
    let port = free_port();
    let wrong_key = format!("\"{WRONG_KEY}\"");
    write_config(
        &h,
        port,
        &[
            ("ve-main", GOOD_KEY, "* * * * * *"),
            ("ve-broken", &wrong_key, "* * * * * *"),
        ],
    );
    let d = Daemon::start(&h, port, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while runs_with(&h, "ve-main", "ok") < 1 || runs_with(&h, "ve-broken", "failed") < 1 {
        assert!(Instant::now() < deadline, "no ok and failed runs yet");
        std::thread::sleep(Duration::from_millis(100));
    }

    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("http://127.0.0.1:{port}/");
    let dom = chromium(profile.path(), &["--dump-dom"], &url);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains("<title>ordersync status</title>"),
        "{}",
        text(&dom)
    );
    for name in ["ve-main", "ve-broken"] {
        assert!(
            dom_text.contains(&format!(r#"data-pipeline="{name}""#)),
            "{name} is not in the DOM:\n{dom_text}"
        );
    }
    assert!(dom_text.contains(r#"data-health="failing""#), "{dom_text}");

    let shot = profile.path().join("status.png");
    let out = chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
        &url,
    );
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", text(&out)));
    let image = decode_png(&png);
    assert_eq!((image.width, image.height), (1280, 1600));
    let colours = image.colour_counts();
    let (most, most_pixels) = colours
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, n)| (*c, *n))
        .expect("pixels");
    let pixels = (image.width * image.height) as usize;
    assert!(
        colours.len() >= 50 && most_pixels * 100 < pixels * 95,
        "a blank page: {} colours, {most:?} covers {most_pixels} of {pixels} pixels",
        colours.len()
    );
    // The health colours are painted: the failing badge's red and the ok green.
    for (name, rgb) in [
        ("failing red", [0xc6, 0x28, 0x28]),
        ("ok green", [0x2e, 0x7d, 0x32]),
    ] {
        assert!(
            colours.get(&rgb).is_some_and(|n| *n > 50),
            "no {name} on the screenshot"
        );
    }
    if let Some(keep) = std::env::var_os("ORDERSYNC_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("copy the screenshot");
    }
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
}

/// An 8-bit RGB or RGBA PNG, decoded to RGB.
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

impl Image {
    fn colour_counts(&self) -> std::collections::HashMap<[u8; 3], usize> {
        let mut counts = std::collections::HashMap::new();
        for p in &self.rgb {
            *counts.entry(*p).or_insert(0) += 1;
        }
        counts
    }
}

/// Decodes the PNG Chromium writes (8-bit RGB or RGBA, not interlaced): the chunks, the zlib
/// stream of the IDAT chunks, and the five scanline filters of the PNG specification.
fn decode_png(bytes: &[u8]) -> Image {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut pos, mut idat) = (8, Vec::new());
    let (mut width, mut height, mut channels) = (0u32, 0u32, 0usize);
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap());
                height = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
                assert_eq!(data[12], 0, "interlaced");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("zlib");
    let stride = width as usize * channels;
    assert_eq!(raw.len(), (stride + 1) * height as usize, "scanlines");
    let mut prev = vec![0u8; stride];
    let mut rgb = Vec::with_capacity(width as usize * height as usize);
    for row in raw.chunks(stride + 1) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] } else { 0 };
            let b = prev[i];
            let c = if i >= channels { prev[i - channels] } else { 0 };
            let predictor = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("filter {other}"),
            };
            cur[i] = line[i].wrapping_add(predictor);
        }
        rgb.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    Image { width, height, rgb }
}
