//! HTTPS trust: the rustls configuration of the S3 client (the platform's verifier, or exactly
//! the certificates of `--cacert`), and recognising a server certificate the client refused,
//! which is a permanent failure, not a broken link to retry.

use std::io;
use std::sync::Arc;

use offsite_backend::{RemoteOptions, StorageError, StorageResult};
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, RootCertStore};
use rustls_platform_verifier::BuilderVerifierExt;

/// How every message about a refused server certificate starts.
pub(crate) const UNTRUSTED: &str = "the server's TLS certificate is not trusted";

/// The rustls client configuration (ring provider; no process-wide provider is installed):
/// the platform's verifier and trust store, or, when [`RemoteOptions::ca_cert`] is set and
/// `use_ca_file` (the endpoint is https), a verifier that trusts exactly the certificates of
/// that file. A CA file that cannot be read, holds no certificate or holds one that is not
/// valid X.509 fails with a Permanent error naming the file; `url` names the repository in
/// other setup failures.
pub(crate) fn client_config(
    remote: &RemoteOptions,
    use_ca_file: bool,
    url: &str,
) -> StorageResult<rustls::ClientConfig> {
    let setup = |why: String| StorageError::Permanent {
        what: url.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidInput, format!("tls setup: {why}")),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?;
    let certs = if use_ca_file { remote.ca_certificates()? } else { None };
    let Some(certs) = certs else {
        return Ok(builder.with_platform_verifier().map_err(|e| setup(e.to_string()))?.with_no_client_auth());
    };
    let path = remote.ca_cert.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
    let mut roots = RootCertStore::empty();
    for (i, der) in certs.into_iter().enumerate() {
        roots.add(CertificateDer::from(der)).map_err(|e| StorageError::Permanent {
            what: format!("CA certificate file {path} (--cacert)"),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("certificate {} in it is not a valid CA certificate: {e}", i + 1),
            ),
        })?;
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// If `err` (or an error under it) is rustls refusing the server's certificate, why, on one
/// line and with what to do; it starts with [`UNTRUSTED`].
pub(crate) fn refused_certificate(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        match e.downcast_ref::<rustls::Error>() {
            Some(tls @ rustls::Error::InvalidCertificate(cert)) => return Some(explain(tls, cert)),
            // The platform verifier found no trust store to check against.
            Some(rustls::Error::General(why)) if why.contains("No CA certificates") => {
                return Some(format!(
                    "{UNTRUSTED}: this system has no CA certificates ({why}): install them \
                     (ca-certificates), or give the CA that signed it with --cacert FILE"
                ))
            }
            _ => {}
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
    match cert {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("{UNTRUSTED}: it has expired ({e})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("{UNTRUSTED}: it is not valid yet; check this machine's clock ({e})")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("{UNTRUSTED}: it is not valid for the endpoint's host name ({e})")
        }
        _ if e.to_string().contains("CaUsedAsEndEntity") => format!(
            "{UNTRUSTED}: it is a CA certificate (CA:TRUE) serving as the server's own; make a \
             server certificate signed by that CA and give the CA with --cacert FILE ({e})"
        ),
        _ => format!(
            "{UNTRUSTED} ({e}): if your own CA signed it, give that CA's certificate with --cacert FILE"
        ),
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
        let empty = rustls::Error::General("No CA certificates were loaded from the system".into());
        let msg = refused_certificate(&io::Error::new(io::ErrorKind::InvalidData, empty)).expect("found");
        assert!(msg.starts_with(UNTRUSTED) && msg.contains("--cacert"), "{msg}");
    }

    #[test]
    fn the_ca_file_is_read_only_for_https_endpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing.pem");
        let opts = RemoteOptions { ca_cert: Some(path.clone()), ..RemoteOptions::default() };
        let err = client_config(&opts, true, "s3://b/p").expect_err("missing file");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("CA certificate file {} (--cacert): cannot read it: ", path.display())),
            "{msg}"
        );
        client_config(&opts, false, "s3://b/p").expect("plain http ignores --cacert");
    }

    #[test]
    fn a_pem_block_that_is_not_a_certificate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .expect("write");
        let opts = RemoteOptions { ca_cert: Some(path.clone()), ..RemoteOptions::default() };
        let msg = client_config(&opts, true, "s3://b/p").expect_err("not X.509").to_string();
        assert!(
            msg.starts_with(&format!(
                "CA certificate file {} (--cacert): certificate 1 in it is not a valid CA certificate: ",
                path.display()
            )),
            "{msg}"
        );
    }
}
