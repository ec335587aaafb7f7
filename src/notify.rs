//! systemd's notification protocol (`sd_notify(3)`): `READY=1`, `STATUS=…`, `WATCHDOG=1`, `STOPPING=1`.
//!
//! A datagram to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace), sent without
//! blocking: if the manager is not reading, a notification is dropped rather than stalling a
//! pipeline. Without `$NOTIFY_SOCKET` (not started by a `Type=notify` unit) every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn socket_addr(path: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => std::os::unix::net::SocketAddr::from_pathname(path),
    }
}

/// Sends one notification (lines like `STATUS=ok`). Errors are returned but callers may ignore them:
/// a lost notification must never stop the daemon.
pub fn notify(message: &str) -> std::io::Result<()> {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let addr = socket_addr(&path)?;
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

/// Sends a notification, logging (not failing) when it cannot be delivered.
pub fn send(message: &str) {
    if let Err(e) = notify(message) {
        tracing::debug!(error = %e, "systemd notification not delivered");
    }
}

/// `STATUS=` takes one line.
pub fn status(line: &str) {
    send(&format!("STATUS={}", line.replace('\n', " ")));
}

/// Half of `WATCHDOG_USEC` when systemd asks for watchdog pings. Like `sd_watchdog_enabled(3)`, an
/// unset `WATCHDOG_PID` means "this process"; a set one must be ours.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
