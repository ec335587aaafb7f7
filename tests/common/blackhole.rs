//! A host that vanished, made on loopback: `tc` drops every packet between one client port and one
//! server port, both ways, as if the machine behind the client had lost power or its network —
//! what neither SIGKILL (the kernel closes the socket) nor SIGSTOP (the kernel still answers
//! keepalives) can stand for. Needs `tc` (iproute2) and CAP_NET_ADMIN; without them the test is
//! skipped as `tools` does. Removed when dropped; filters left by a killed test match only that
//! one pair of ports.

use std::process::Command;

use super::tool_missing;

pub struct Blackhole {
    qdisc_added: bool,
    /// The class and filter priority of this hole (the client port, so two holes at once, in
    /// two test processes, do not meet).
    id: String,
}

fn tc(args: &[&str]) -> Result<(), String> {
    let out = Command::new("tc")
        .args(args)
        .output()
        .map_err(|e| format!("tc: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Blackhole {
    /// Drops everything between `client_port` and `server_port` on loopback from now on. `None`
    /// (after saying why) when `tc` is missing or not permitted here.
    pub fn between(client_port: u16, server_port: u16) -> Option<Blackhole> {
        // Every packet on lo leaves through its egress once, so a root qdisc there sees both
        // directions. Built from parts kernels without modules have: an htb root that lets the
        // unmatched through untouched, a class whose leaf is the blackhole qdisc, and u32 filters
        // sending the two directions of the connection to it (no filter action needed).
        let qdisc_added = tc(&[
            "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "0",
        ])
        .is_ok();
        let id = format!("{:x}", client_port.max(1));
        let (class, leaf) = (format!("1:{id}"), format!("{id}:"));
        let (client, server) = (client_port.to_string(), server_port.to_string());
        let hole = Blackhole { qdisc_added, id };
        let mut steps = vec![
            vec![
                "class", "add", "dev", "lo", "parent", "1:", "classid", &class, "htb", "rate",
                "1mbit",
            ],
            vec![
                "qdisc",
                "add",
                "dev",
                "lo",
                "parent",
                &class,
                "handle",
                &leaf,
                "blackhole",
            ],
        ];
        for (from, to) in [(&client, &server), (&server, &client)] {
            steps.push(vec![
                "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", &client,
                "u32", "match", "ip", "sport", from, "0xffff", "match", "ip", "dport", to,
                "0xffff", "classid", &class,
            ]);
        }
        for step in steps {
            if let Err(why) = tc(&step) {
                tool_missing(&format!("a blackhole on lo ({why})"));
                return None;
            }
        }
        Some(hole)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let prio = u16::from_str_radix(&self.id, 16).unwrap_or(1).to_string();
        let _ = tc(&["filter", "del", "dev", "lo", "parent", "1:", "prio", &prio]);
        let _ = tc(&[
            "class",
            "del",
            "dev",
            "lo",
            "classid",
            &format!("1:{}", self.id),
        ]);
        // The root goes with the hole that added it (any other hole's class with it: two test
        // processes cutting connections at the same moment is not worth more).
        if self.qdisc_added {
            let _ = tc(&["qdisc", "del", "dev", "lo", "root"]);
        }
    }
}
