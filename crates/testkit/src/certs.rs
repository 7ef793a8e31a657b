//! Test certificates for HTTPS tests: a CA, a server certificate it signed for 127.0.0.1 (and
//! localhost), and a second, unrelated CA, made by the system's `openssl` command in a temp
//! directory that lives as long as the [`Certs`].

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A test CA, a server certificate it signed, and an unrelated CA (PEM files).
pub struct Certs {
    _dir: tempfile::TempDir,
    /// PEM of the CA that signed the server certificate.
    pub ca: PathBuf,
    /// PEM of a CA that signed nothing here.
    pub other_ca: PathBuf,
    /// The server's certificate (PEM), for 127.0.0.1 and localhost.
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

/// Make [`Certs`]. `Err` says why it could not (`openssl` missing or failing), so the caller
/// can skip the test, or fail it in CI.
pub fn make() -> Result<Certs, String> {
    if !Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        return Err("openssl is not runnable; install it with `apt-get install -y openssl`".into());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let d = dir.path();
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for name in ["ca", "other-ca"] {
        let (key, pem, subj) =
            (format!("{name}.key"), format!("{name}.pem"), format!("/CN=offsite test {name}"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
        args.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&args)?;
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    run(&args)?;
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| format!("extensions file: {e}"))?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    Ok(Certs {
        ca: d.join("ca.pem"),
        other_ca: d.join("other-ca.pem"),
        cert: d.join("server.pem"),
        key: d.join("server.key"),
        _dir: dir,
    })
}

/// [`make`] for a test: `None` (the test skips, with a note on stderr) when the certificates
/// cannot be made, except under `CI=true`, where that is a failure.
pub fn for_test() -> Option<Certs> {
    match make() {
        Ok(c) => Some(c),
        Err(why) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and {why}");
            eprintln!("note: skipping this test: {why}");
            None
        }
    }
}
