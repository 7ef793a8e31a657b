//! Settings every remote backend (SFTP, S3, REST, rclone) honours, so that no call can hang and
//! no slow link is cut for being slow.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::CertificateDer;

use crate::{StorageError, StorageResult};

/// Timeouts, retry budget, concurrency and trusted certificates of a remote backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOptions {
    /// Give up on a transfer when no byte moved for this long (not a limit on its length).
    pub idle_timeout: Duration,
    /// Give up on establishing a connection after this long.
    pub connect_timeout: Duration,
    /// Stop retrying once the storage has failed for this long, counted over all calls and
    /// threads since its last success, and fail with a clear "storage unreachable" error (see
    /// [`crate::retry`]).
    pub give_up_after: Duration,
    /// Parallel requests (uploads, downloads) the backend allows at once.
    pub concurrency: usize,
    /// A PEM file of one or more root certificates that HTTPS backends (REST, S3) trust
    /// instead of the system's roots (`--cacert`); `None` trusts the system's roots. Backends
    /// read it when they are built and fail with an error naming the file if it cannot be
    /// read or holds no certificate.
    pub ca_cert: Option<PathBuf>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            give_up_after: Duration::from_secs(600),
            concurrency: 4,
            ca_cert: None,
        }
    }
}

impl RemoteOptions {
    /// The certificates in [`RemoteOptions::ca_cert`] (DER, in file order), or `None` when no
    /// file is set and the system's roots apply.
    ///
    /// Every `CERTIFICATE` block of the PEM file is returned; other blocks (keys, CRLs) are
    /// skipped. Fails with a Permanent error whose one-line message names the file and says
    /// what is wrong: it cannot be read, it is not PEM, or it holds no certificate. Whether each
    /// certificate is a valid X.509 one is for the TLS library to say.
    pub fn ca_certificates(&self) -> StorageResult<Option<Vec<Vec<u8>>>> {
        self.ca_cert.as_deref().map(read_ca_file).transpose()
    }
}

/// The DER bytes of every `CERTIFICATE` block in the PEM file `path` (see
/// [`RemoteOptions::ca_certificates`]).
fn read_ca_file(path: &Path) -> StorageResult<Vec<Vec<u8>>> {
    let what = || format!("CA certificate file {} (--cacert)", path.display());
    let bad = |why: String| StorageError::Permanent {
        what: what(),
        source: io::Error::new(io::ErrorKind::InvalidData, why),
    };
    let bytes = std::fs::read(path).map_err(|e| StorageError::Permanent {
        what: what(),
        source: io::Error::new(e.kind(), format!("cannot read it: {e}")),
    })?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        match item {
            Ok(cert) => certs.push(cert.as_ref().to_vec()),
            Err(e) => return Err(bad(format!("not a valid PEM file: {}", pem_problem(&e)))),
        }
    }
    if certs.is_empty() {
        return Err(bad("no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

/// A PEM parse error on one line, with its byte strings as text.
fn pem_problem(e: &pem::Error) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("no \"-----END {}-----\" line", text(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => format!("bad section start {:?}", text(line)),
        pem::Error::Base64Decode(why) => format!("bad base64 ({why})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PEM `CERTIFICATE` block. Its bytes are not a whole certificate: this module only
    /// unwraps PEM, the TLS libraries parse the X.509 inside.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBgTCCASegAwIBAgIUJ5LFcDh+6s7o4g0Q3E3v8WnC2hYwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMb2Zmc2l0ZS10ZXN0MB4XDTI2MDEwMTAwMDAwMFoXDTI3MDEw
MTAwMDAwMFowFzEVMBMGA1UEAwwMb2Zmc2l0ZS10ZXN0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAE
-----END CERTIFICATE-----
";

    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).expect("write");
        p
    }

    fn message(r: StorageResult<Vec<Vec<u8>>>) -> String {
        let e = r.expect_err("should fail");
        assert!(matches!(e, StorageError::Permanent { .. }), "{e:?}");
        let m = e.to_string();
        assert!(!m.contains('\n'), "{m}");
        m
    }

    #[test]
    fn every_certificate_block_is_read_in_order_and_other_blocks_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let two = CERT.replace("KoZIzj0DAQcDQgAE", "KoZIzj0DAQcDQgAF");
        let p = write(dir.path(), "ca.pem", &format!("comment line\n{CERT}{key}{two}"));
        let certs = read_ca_file(&p).expect("two certificates");
        assert_eq!(certs.len(), 2);
        assert_ne!(certs[0], certs[1]);
        assert_eq!(&certs[0][..2], &[0x30, 0x82], "DER starts with a SEQUENCE");
        let opts = RemoteOptions { ca_cert: Some(p), ..RemoteOptions::default() };
        assert_eq!(opts.ca_certificates().expect("read").expect("set"), certs);
        assert!(RemoteOptions::default().ca_certificates().expect("none").is_none());
    }

    #[test]
    fn a_missing_file_names_the_file_and_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("nope.pem");
        let m = message(read_ca_file(&p));
        assert!(
            m.starts_with(&format!("CA certificate file {} (--cacert): cannot read it: ", p.display())),
            "{m}"
        );
        assert!(m.contains("No such file"), "{m}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in [
            ("garbage.pem", "this is not a certificate\n"),
            ("empty.pem", ""),
            ("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        ] {
            let p = write(dir.path(), name, content);
            let m = message(read_ca_file(&p));
            assert_eq!(
                m,
                format!(
                    "CA certificate file {} (--cacert): no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
                    p.display()
                )
            );
        }
    }

    #[test]
    fn broken_pem_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cut = CERT.replace("-----END CERTIFICATE-----\n", "");
        let m = message(read_ca_file(&write(dir.path(), "cut.pem", &cut)));
        assert!(m.contains("not a valid PEM file: no \"-----END CERTIFICATE-----\" line"), "{m}");
        let bad64 = CERT.replace("KoZIzj0DAQcDQgAE", "KoZIzj0DAQcDQgA*");
        let m = message(read_ca_file(&write(dir.path(), "b64.pem", &bad64)));
        assert!(m.contains("not a valid PEM file: bad base64"), "{m}");
    }
}
