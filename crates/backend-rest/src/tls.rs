//! HTTPS trust: which root certificates a REST client accepts (`--cacert` or the built-in
//! webpki roots), and recognising a server certificate the client refused, which is a
//! permanent failure, not a broken link to retry.

use std::io;
use std::sync::Arc;

use offsite_backend::{RemoteOptions, StorageError, StorageResult};
use ureq::rustls::pki_types::CertificateDer;
use ureq::rustls::{self, CertificateError, RootCertStore};

/// The TLS configuration for `opts`: `None` when no CA file is set (ureq's default, the
/// webpki roots), else one that trusts exactly the certificates of the file, with rustls and
/// ring like the default. A file that cannot be read, holds no certificate or holds one that
/// is not valid X.509 fails with a Permanent error naming the file.
pub(crate) fn client_config(opts: &RemoteOptions) -> StorageResult<Option<Arc<rustls::ClientConfig>>> {
    let Some(certs) = opts.ca_certificates()? else { return Ok(None) };
    let path = opts.ca_cert.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
    let bad = |why: String| StorageError::Permanent {
        what: format!("CA certificate file {path} (--cacert)"),
        source: io::Error::new(io::ErrorKind::InvalidData, why),
    };
    let mut roots = RootCertStore::empty();
    for (i, der) in certs.into_iter().enumerate() {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| bad(format!("certificate {} in it is not a valid CA certificate: {e}", i + 1)))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("tls setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// If `err` (or an error under it) is rustls refusing the server's certificate, why, on one
/// line and with what to do: "the server's TLS certificate is not trusted (...)".
pub(crate) fn refused_certificate(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls @ rustls::Error::InvalidCertificate(cert)) = e.downcast_ref::<rustls::Error>() {
            return Some(explain(tls, cert));
        }
        // io::Error::source() skips the error it wraps; look at that one too.
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if let Some(found) = refused_certificate(inner) {
                return Some(found);
            }
        }
        next = e.source();
    }
    None
}

/// The one-line explanation of `e`, a refused certificate (`cert`).
fn explain(e: &rustls::Error, cert: &CertificateError) -> String {
    let what = "the server's TLS certificate is not trusted";
    match cert {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("{what}: it has expired ({e})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("{what}: it is not valid yet; check this machine's clock ({e})")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("{what}: it is not valid for the host name in the repository URL ({e})")
        }
        _ if e.to_string().contains("CaUsedAsEndEntity") => format!(
            "{what}: it is a CA certificate (CA:TRUE) serving as the server's own; make a server \
             certificate signed by that CA and give the CA with --cacert FILE ({e})"
        ),
        _ => format!("{what} ({e}): if your own CA signed it, give that CA's certificate with --cacert FILE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_is_found_under_io_errors() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = io::Error::new(io::ErrorKind::InvalidData, tls);
        let msg = refused_certificate(&io).expect("found");
        assert_eq!(
            msg,
            "the server's TLS certificate is not trusted (invalid peer certificate: UnknownIssuer): \
             if your own CA signed it, give that CA's certificate with --cacert FILE"
        );
        let ca_as_server = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(io::Error::other("CaUsedAsEndEntity")),
        )));
        let msg =
            refused_certificate(&io::Error::new(io::ErrorKind::InvalidData, ca_as_server)).expect("found");
        assert!(msg.contains("it is a CA certificate (CA:TRUE) serving as the server's own"), "{msg}");
        let other = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert!(refused_certificate(&other).is_none());
        assert!(refused_certificate(&io::Error::other("plain")).is_none());
    }

    #[test]
    fn no_ca_file_keeps_the_default_roots() {
        assert!(client_config(&RemoteOptions::default()).expect("no file").is_none());
    }

    #[test]
    fn a_pem_block_that_is_not_a_certificate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .expect("write");
        let opts = RemoteOptions { ca_cert: Some(path.clone()), ..RemoteOptions::default() };
        let err = client_config(&opts).expect_err("not X.509");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "CA certificate file {} (--cacert): certificate 1 in it is not a valid CA certificate: ",
                path.display()
            )),
            "{msg}"
        );
    }
}
