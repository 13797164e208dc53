//! Listener set-up: TLS (rustls, TLS 1.2 and 1.3 only), the plain-HTTP
//! redirect listener, and the Unix socket.

use crate::config::{SslConfig, UnixSocketConfig};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

/// Build the TLS configuration from PEM files. Errors name the file.
pub fn tls_config(ssl: &SslConfig) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ssl.cert_path)
        .map_err(|e| {
            format!(
                "SSL_CERT_PATH {}: cannot read certificate: {e}",
                ssl.cert_path
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("SSL_CERT_PATH {}: invalid PEM: {e}", ssl.cert_path))?;
    if certs.is_empty() {
        return Err(format!(
            "SSL_CERT_PATH {}: no certificate found in the file",
            ssl.cert_path
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&ssl.key_path).map_err(|e| {
        format!(
            "SSL_KEY_PATH {}: cannot read private key: {e}",
            ssl.key_path
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "SSL_CERT_PATH {} / SSL_KEY_PATH {}: {e}",
                ssl.cert_path, ssl.key_path
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Where the redirect listener sends clients.
#[derive(Clone)]
pub struct RedirectTarget {
    /// `DOMAIN`, if set; otherwise the request's `Host`.
    pub domain: Option<String>,
    /// The HTTPS port; omitted from the URL when it is 443.
    pub https_port: u16,
}

/// Every request on the plain listener: a permanent redirect to HTTPS
/// (301 for GET/HEAD, 308 otherwise so the method and body are kept).
pub async fn redirect(req: HttpRequest, target: web::Data<RedirectTarget>) -> HttpResponse {
    let host = match &target.domain {
        Some(domain) => domain.clone(),
        None => strip_port(req.connection_info().host()).to_string(),
    };
    let port = match target.https_port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let status = match *req.method() {
        actix_web::http::Method::GET | actix_web::http::Method::HEAD => {
            StatusCode::MOVED_PERMANENTLY
        }
        _ => StatusCode::PERMANENT_REDIRECT,
    };
    HttpResponse::build(status)
        .insert_header((header::LOCATION, format!("https://{host}{port}{path}")))
        .finish()
}

/// `host[:port]` or `[v6][:port]` without the port.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The socket's directory must exist and the path must not be a regular file.
pub fn check_unix_socket_dir(cfg: &UnixSocketConfig) -> Result<(), String> {
    let path = Path::new(&cfg.path);
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(format!(
            "UNIX_SOCKET_PATH {}: directory {} does not exist",
            cfg.path,
            dir.display()
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => Err(format!(
            "UNIX_SOCKET_PATH {}: exists and is not a socket; refusing to replace it",
            cfg.path
        )),
        _ => Ok(()),
    }
}

/// Make the socket path usable: the directory must exist; a stale socket
/// file left by a crashed server is removed; a live one (another server is
/// answering) or a non-socket file is an error.
pub fn prepare_unix_socket(cfg: &UnixSocketConfig) -> Result<(), String> {
    check_unix_socket_dir(cfg)?;
    let path = Path::new(&cfg.path);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("UNIX_SOCKET_PATH {}: {e}", cfg.path)),
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "UNIX_SOCKET_PATH {}: another server is listening on this socket",
                    cfg.path
                ));
            }
            std::fs::remove_file(path).map_err(|e| {
                format!(
                    "UNIX_SOCKET_PATH {}: cannot remove stale socket: {e}",
                    cfg.path
                )
            })?;
            log::info!("removed stale socket file {}", cfg.path);
            Ok(())
        }
        Ok(_) => unreachable!("check_unix_socket_dir refused non-sockets"),
    }
}

/// Apply `UNIX_SOCKET_PERMISSION_MODE` to the bound socket file.
pub fn set_socket_mode(cfg: &UnixSocketConfig) -> Result<(), String> {
    std::fs::set_permissions(
        &cfg.path,
        std::fs::Permissions::from_mode(cfg.permission_mode),
    )
    .map_err(|e| {
        format!(
            "UNIX_SOCKET_PATH {}: cannot set mode {:o}: {e}",
            cfg.path, cfg.permission_mode
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket_cfg(path: &Path) -> UnixSocketConfig {
        UnixSocketConfig {
            enabled: true,
            path: path.to_string_lossy().into_owned(),
            permission_mode: 0o660,
        }
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("127.0.0.1:80"), "127.0.0.1");
    }

    #[test]
    fn unix_socket_paths_are_checked() {
        let dir = std::env::temp_dir().join(format!("sy-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let missing = socket_cfg(&dir.join("nope/s.sock"));
        let err = prepare_unix_socket(&missing).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");

        let fresh = socket_cfg(&dir.join("fresh.sock"));
        assert!(prepare_unix_socket(&fresh).is_ok());

        // A stale socket (nobody listening) is replaced.
        let stale_path = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale_path).unwrap());
        assert!(stale_path.exists());
        prepare_unix_socket(&socket_cfg(&stale_path)).unwrap();
        assert!(!stale_path.exists());

        // A live socket is not touched.
        let live_path = dir.join("live.sock");
        let _live = std::os::unix::net::UnixListener::bind(&live_path).unwrap();
        let err = prepare_unix_socket(&socket_cfg(&live_path)).unwrap_err();
        assert!(err.contains("another server"), "{err}");

        // A regular file is not deleted.
        let file_path = dir.join("file.sock");
        std::fs::write(&file_path, b"x").unwrap();
        let err = prepare_unix_socket(&socket_cfg(&file_path)).unwrap_err();
        assert!(err.contains("not a socket"), "{err}");
        assert!(file_path.exists());

        std::fs::remove_dir_all(&dir).ok();
    }
}
