//! HTTPS only: health over TLS, no HTTP for plaintext bytes, a redirect-only
//! plain port, TLS versions, security headers, certificate hot reload.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{client_trusting, TestApp};

#[tokio::test]
async fn health_answers_over_tls_with_security_headers() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    // One node on SQLite: alone, under the id it generated and kept.
    assert_eq!(body["node"]["state"], "alone", "{body}");
    assert!(
        body["node"]["id"].as_str().unwrap().starts_with("node-"),
        "{body}"
    );
    assert!(headers["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let permissions = headers["permissions-policy"].to_str().unwrap();
    assert!(permissions.contains("camera=(self)") && permissions.contains("microphone=(self)"));
    app.stop().await;
}

#[tokio::test]
async fn error_responses_carry_the_security_headers_too() {
    let app = TestApp::spawn().await;
    for response in [
        app.client
            .get(app.url("/no/such/page"))
            .send()
            .await
            .unwrap(),
        app.client
            .get(app.url("/v1/sessions"))
            .send()
            .await
            .unwrap(),
    ] {
        assert!(response.status().is_client_error());
        assert!(response.headers().contains_key("content-security-policy"));
        assert!(response.headers().contains_key("strict-transport-security"));
    }
    app.stop().await;
}

#[tokio::test]
async fn plaintext_http_on_the_tls_port_gets_no_http_response() {
    let app = TestApp::spawn().await;
    let mut socket = tokio::net::TcpStream::connect(app.https_addr)
        .await
        .unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(
        !text.contains("HTTP/"),
        "plaintext got an HTTP answer: {text:?}"
    );
    assert!(!text.contains("ok"), "plaintext got content: {text:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_plain_port_only_redirects() {
    let app = TestApp::spawn().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let port = app.redirect_addr.unwrap().port();
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/j/some-session?x=1"),
        ("POST", "/v1/sessions"),
        ("DELETE", "/v1/sessions/abc"),
    ] {
        let response = plain
            .request(
                method.parse().unwrap(),
                format!("http://127.0.0.1:{port}{path}"),
            )
            .bearer_auth(&app.admin_key)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 308, "{method} {path}");
        assert_eq!(
            response.headers()["location"].to_str().unwrap(),
            app.url(path),
            "{method} {path}"
        );
        assert!(
            response.bytes().await.unwrap().is_empty(),
            "{method} {path} served a body"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_served_and_1_3_only_can_be_required() {
    let app = TestApp::spawn().await;
    for version in [
        reqwest::tls::Version::TLS_1_2,
        reqwest::tls::Version::TLS_1_3,
    ] {
        let client = client_trusting(&[&app.certs.ca_cert], app.https_addr)
            .min_tls_version(version)
            .max_tls_version(version)
            .build()
            .unwrap();
        let response = client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{version:?}");
    }
    app.stop().await;

    let strict = TestApp::spawn_with(|c| c.tls.min_version = "1.3".into()).await;
    let old = client_trusting(&[&strict.certs.ca_cert], strict.https_addr)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(old.get(strict.url("/healthz")).send().await.is_err());
    strict.stop().await;
}

#[tokio::test]
async fn the_server_refuses_to_start_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tandem::config::Config {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.tls.cert_file = dir.path().join("missing-cert.pem");
    config.tls.key_file = dir.path().join("missing-key.pem");
    let listeners = tandem::server::Listeners::bind(&config.server).unwrap();
    let error = match tandem::server::start(config, listeners).await {
        Ok(_) => panic!("the server started without a certificate"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("tls.cert_file"), "{error}");
    assert!(error.contains("tandem demo"), "{error}");
}

/// The DER of the certificate the server presents to a new connection.
async fn served_certificate(app: &TestApp, cas: &[&std::path::PathBuf]) -> Option<Vec<u8>> {
    let client = client_trusting(cas, app.https_addr)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = client.get(app.url("/healthz")).send().await.ok()?;
    let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

fn first_cert_der(path: &std::path::Path) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    der.to_vec()
}

async fn replace_certificate(app: &TestApp) -> tandem::tls::devcert::DevCerts {
    let renewed =
        tandem::tls::devcert::generate(&app.dir.path().join("renewed"), &["localhost".into()])
            .unwrap();
    // Key first, then certificate, as a renewal tool might: the reloader
    // must survive the moment where the two do not match.
    std::fs::copy(&renewed.key, &app.config.tls.key_file).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::copy(&renewed.cert, &app.config.tls.cert_file).unwrap();
    renewed
}

async fn wait_for_certificate(app: &TestApp, cas: &[&std::path::PathBuf], expected: &[u8]) {
    for _ in 0..100 {
        if served_certificate(app, cas).await.as_deref() == Some(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the new certificate was not served within 10 s");
}

#[tokio::test]
async fn a_replaced_certificate_is_served_without_a_restart() {
    let app = TestApp::spawn_with(|c| c.tls.reload_interval_secs = 1).await;
    let original = first_cert_der(&app.certs.cert);
    assert_eq!(
        served_certificate(&app, &[&app.certs.ca_cert])
            .await
            .unwrap(),
        original
    );

    let renewed = replace_certificate(&app).await;
    let cas = [&app.certs.ca_cert, &renewed.ca_cert];
    wait_for_certificate(&app, &cas, &first_cert_der(&renewed.cert)).await;
    app.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let app = TestApp::spawn_with(|c| c.tls.reload_interval_secs = 0).await;
    let original = first_cert_der(&app.certs.cert);
    let renewed = replace_certificate(&app).await;
    let cas = [&app.certs.ca_cert, &renewed.ca_cert];
    // No file watch: the old certificate stays until the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_certificate(&app, &cas).await.unwrap(), original);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_certificate(&app, &cas, &first_cert_der(&renewed.cert)).await;
    app.stop().await;
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_old_certificate() {
    let app = TestApp::spawn_with(|c| c.tls.reload_interval_secs = 1).await;
    std::fs::write(
        &app.config.tls.cert_file,
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Connections that hold a descriptor without using it
// ---------------------------------------------------------------------------

/// A TLS connection to the server offering `alpn`.
async fn tls_connect(
    app: &TestApp,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut config = crate::helpers::signal_client::tls_config(&app.certs.ca_cert).unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(app.https_addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// True when the server closes `stream` within `within` (whatever it sends
/// before that is read and ignored).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Short timeouts, so that a test sees them act.
fn short_timeouts(config: &mut tandem::config::Config) {
    config.server.tls_handshake_timeout_secs = 1;
    config.server.header_read_timeout_secs = 2;
    config.server.idle_timeout_secs = 1;
}

#[tokio::test]
async fn connections_that_say_nothing_are_closed() {
    let app = TestApp::spawn_with(short_timeouts).await;
    let limit = Duration::from_secs(5);

    // No TLS handshake at all.
    let mut tcp = tokio::net::TcpStream::connect(app.https_addr)
        .await
        .unwrap();
    assert!(closed_within(&mut tcp, limit).await, "silent TCP");

    // TLS, then nothing: HTTP/1.1, and HTTP/2 before its preface.
    let mut h1 = tls_connect(&app, b"http/1.1").await.unwrap();
    assert!(closed_within(&mut h1, limit).await, "silent HTTP/1.1");
    let mut h2 = tls_connect(&app, b"h2").await.unwrap();
    assert!(closed_within(&mut h2, limit).await, "silent HTTP/2");

    // HTTP/2 with its preface and settings, then no request.
    let mut h2 = tls_connect(&app, b"h2").await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    assert!(closed_within(&mut h2, limit).await, "idle HTTP/2");

    // Headers trickled a byte at a time: bytes flow, the headers never end.
    let mut slow = tls_connect(&app, b"http/1.1").await.unwrap();
    let started = std::time::Instant::now();
    let trickle = async {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = tokio::time::timeout(limit, trickle).await;
    assert!(
        started.elapsed() < limit,
        "a trickled request head was still open after {limit:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_quiet_websocket_outlives_the_idle_timeout_and_requests_still_work() {
    let app = TestApp::spawn_with(short_timeouts).await;
    let session = app
        .create_session(&crate::helpers::couple_session(-5, 60))
        .await;
    let links = app.invite_tokens(session["id"].as_str().unwrap()).await;
    let mut client = crate::helpers::signal_client::SignalClient::connect(&app)
        .await
        .unwrap();
    client.join(&links["clin-1"]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    client
        .send_json(serde_json::json!({"type": "ping"}))
        .await
        .unwrap();
    client
        .recv_until("pong", Duration::from_secs(5))
        .await
        .unwrap();
    // A kept-alive client whose connection was closed as idle simply
    // opens another.
    for _ in 0..2 {
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_caps_are_closed_at_once() {
    for (total, per_ip) in [(64, 8), (16, 16)] {
        let app = TestApp::spawn_with(|c| {
            c.server.max_connections = total;
            c.server.max_connections_per_ip = per_ip;
        })
        .await;
        let cap = total.min(per_ip);
        let mut held = Vec::new();
        for _ in 0..cap {
            held.push(tls_connect(&app, b"http/1.1").await.unwrap());
        }
        // One more is closed before its handshake can finish.
        let refused = tls_connect(&app, b"http/1.1").await;
        let refused = match refused {
            Err(_) => true,
            Ok(mut stream) => closed_within(&mut stream, Duration::from_secs(2)).await,
        };
        assert!(refused, "connection {} of a cap of {cap}", cap + 1);
        // The connections within the cap still work.
        let stream = held.last_mut().unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        // A closed connection gives its place back.
        held.clear();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut again = tls_connect(&app, b"http/1.1").await.unwrap();
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let n = again.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        app.stop().await;
    }
}
