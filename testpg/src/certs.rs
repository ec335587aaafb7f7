//! Certificates for a cluster that speaks TLS, made with `openssl`: a CA, a server certificate for
//! 127.0.0.1 signed by it, and a second CA that signed nothing the server shows.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Certificate authorities for the TLS tests, as PEM files.
#[derive(Clone, Debug)]
pub struct PgTls {
    /// Signed the server's certificate, which names 127.0.0.1 (and not `localhost`).
    pub ca: PathBuf,
    /// Signed nothing the server shows.
    pub other_ca: PathBuf,
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it, and a second CA, in `dir`.
pub(crate) fn make_certificates(dir: &Path) -> Option<PgTls> {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = |name: &str| {
        let (key, crt, subject) = (
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("/CN=ordersync test {name}"),
        );
        let mut args = vec!["req", "-x509", "-days", "3", "-subj", &subject];
        args.extend(ec);
        args.extend([
            "-keyout",
            &key,
            "-out",
            &crt,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&args)
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let mut request = vec!["req", "-subj", "/CN=127.0.0.1", "-keyout", "server.key"];
    request.extend(ec);
    request.extend(["-out", "server.csr"]);
    let made = ca("ca")
        && ca("other_ca")
        && openssl(&request)
        && openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
    // The server refuses a key others may read.
    let private = std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .is_ok();
    (made && private).then(|| PgTls {
        ca: dir.join("ca.crt"),
        other_ca: dir.join("other_ca.crt"),
    })
}
