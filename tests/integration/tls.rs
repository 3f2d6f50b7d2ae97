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
