//! What every simulator's server does with a client that behaves badly on the wire: here, one
//! that hangs up before the server has read its request (the accept loop is shared, so veapi
//! stands for all five).

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use ordersync_sim::{veapi, Faults, Simulator, VeapiSim, VeapiSimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Regression: served as `axum::serve` sets hyper up, a request that came on an open connection
/// together with its client's hang-up — a client that gave up on its timeout while the server,
/// loaded, had not read it yet — was dropped unhandled, so never counted, though the client had
/// sent (and counted) it: under load, ordersync's runs counted more requests than the simulators.
#[test]
fn a_request_whose_client_hung_up_before_the_server_read_it_is_still_counted() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let now = NaiveDate::from_ymd_opt(2025, 6, 1)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("valid date");
    let sim = rt
        .block_on(VeapiSim::start(VeapiSimConfig {
            seed: 7,
            vekey: "test-vekey".to_string(),
            orders: 10,
            days: 1,
            now,
            faults: Faults::default(),
        }))
        .expect("simulator starts");
    let request = format!(
        "GET {}?vekey=test-vekey HTTP/1.1\r\nHost: {}\r\n\r\n",
        veapi::PATH,
        sim.addr()
    );
    // One request answered whole on each connection: the server then waits on it for the next.
    let mut open = Vec::new();
    for _ in 0..3 {
        let stream = rt.block_on(async {
            let mut stream = tokio::net::TcpStream::connect(sim.addr()).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            while !answered(&answer) {
                if stream.read_buf(&mut answer).await? == 0 {
                    break;
                }
            }
            stream.into_std()
        });
        open.push(stream.expect("one request answered"));
    }
    assert_eq!(sim.requests(), 3);
    // The runtime is not driven until `block_on` below, so the server reads nothing meanwhile,
    // as one too busy to: each client sends its next request whole and hangs up at once.
    for mut stream in open {
        stream.set_nonblocking(false).expect("blocking");
        stream.write_all(request.as_bytes()).expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    rt.block_on(async {
        while sim.requests() < 6 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert_eq!(sim.requests(), 6, "every request that reached the server");
}

/// Whether `bytes` hold a whole HTTP answer: its head, and as much body as its `Content-Length`.
fn answered(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}
