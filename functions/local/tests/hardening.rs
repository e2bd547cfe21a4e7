//! The built `ticketbound-local` binary against clients that misbehave: a slow-loris connection is closed after
//! the header timeout, the connection cap holds, a body declared too large is refused before it is sent, one
//! sent whole gets its 413 (not a reset connection), a foreign `Host` is refused (DNS rebinding), and a
//! cross-origin write is refused while same-origin and Origin-less (curl) writes work. Every answer is read
//! with a bound, so a server that holds a connection fails the test instead of hanging it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN_HEADERS: &str =
    "x-ticketbound-user: admin@example.com\r\nx-ticketbound-groups: ticketbound-admins\r\n";
/// How long any answer may take before the test calls the server stuck.
const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(extra: &[&str]) -> Server {
    start_with_secrets(extra, None)
}

/// The server with `secrets` (the JSON of `<data dir>/secrets.json`) in its data directory, when given.
fn start_with_secrets(extra: &[&str], secrets: Option<&Value>) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("tb-hardening-{port}-{}", std::process::id()));
    if let Some(secrets) = secrets {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .unwrap();
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join("secrets.json"))
            .unwrap()
            .write_all(secrets.to_string().as_bytes())
            .unwrap();
    }
    let child = Command::new(env!("CARGO_BIN_EXE_ticketbound-local"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&dir)
        .args(["--reconcile-every", "off"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ticketbound-local");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the local server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, port, dir }
}

/// An answer as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    json: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }
}

/// Reads one answer (the connection is `close`d by the request, so it ends at EOF), within [`PATIENCE`].
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the server answers in time")
        .expect("the answer is read, not reset");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        json: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body`, then reads the answer.
async fn exchange(port: u16, head: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("{head}connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
        .write_all(body)
        .await
        .expect("the whole body is sent without a broken pipe");
    read_answer(&mut stream).await
}

fn put_resource(port: u16, id: &str, extra_headers: &str, body: &str) -> (String, Vec<u8>) {
    (
        format!(
            "PUT /v1/resources/{id} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{ADMIN_HEADERS}\
             content-type: application/json\r\ncontent-length: {}\r\n{extra_headers}",
            body.len()
        ),
        body.as_bytes().to_vec(),
    )
}

const RESOURCE: &str = r#"{"name":"Staging","provisioner":{"kind":"none"}}"#;

#[tokio::test]
async fn a_slow_loris_connection_is_closed_after_the_header_timeout() {
    let server = start(&["--header-timeout", "PT1S"]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let started = Instant::now();
    // Headers that never end.
    stream
        .write_all(
            format!(
                "GET /v1/resources HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n",
                server.port
            )
            .as_bytes(),
        )
        .await
        .unwrap();

    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;

    assert!(
        closed.is_ok(),
        "the connection is still open after {PATIENCE:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not closed before the timeout"
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let server = start(&["--body-timeout", "PT1S"]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (head, _) = put_resource(server.port, "stage-db", "", RESOURCE);
    // The headers promise a body; only its first byte comes.
    stream
        .write_all(format!("{head}connection: close\r\n\r\n{{").as_bytes())
        .await
        .unwrap();

    let answer = read_answer(&mut stream).await;

    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.code(), "request_timeout");
}

/// A connection that sends half a request and is served (not refused at the cap: the start-up probe's
/// connection may still hold a slot for a moment, so a refused attempt is made again).
async fn hold(port: u16) -> TcpStream {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream
            .write_all(b"GET /v1/resources HTTP/1.1\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 1];
        let answered = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut first)).await;
        if answered.is_err() {
            return stream;
        }
        assert!(Instant::now() < deadline, "no connection is held");
    }
}

#[tokio::test]
async fn the_connection_cap_holds_and_frees_when_connections_close() {
    let server = start(&["--max-connections", "2", "--header-timeout", "PT30S"]);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(hold(server.port).await);
    }

    let head = format!(
        "GET /v1/resources HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n{ADMIN_HEADERS}",
        server.port
    );
    let refused = exchange(server.port, &head, b"").await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.code(), "too_many_connections");

    drop(held);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = exchange(server.port, &head, b"").await;
        if answer.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cap did not free up: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let server = start(&[]);
    for path in [
        "/v1/resources/stage-db",
        "/webhooks/jira/no-such-connection",
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n{ADMIN_HEADERS}content-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            server.port,
            3 * 1024 * 1024
        )
        .replace("PUT /webhooks", "POST /webhooks");
        stream.write_all(head.as_bytes()).await.unwrap();

        // Not a byte of the body is sent: the answer (up to the end of its §5 body) must come anyway.
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, async {
            let mut chunk = [0u8; 4096];
            while !answer.ends_with(b"}}") {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed without an answer");
                answer.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("answered before the body");
        let text = String::from_utf8_lossy(&answer).to_string();
        if path.starts_with("/webhooks") {
            // An unknown connection is known before the body is read.
            assert!(text.starts_with("HTTP/1.1 404"), "{text}");
            assert!(text.contains("unknown_connection"), "{text}");
        } else {
            assert!(text.starts_with("HTTP/1.1 413"), "{text}");
            assert!(text.contains("body_too_large"), "{text}");
        }
    }
}

#[tokio::test]
async fn a_body_over_the_limit_sent_whole_gets_its_413_not_a_reset() {
    let server = start(&[]);
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(3 * 1024 * 1024));

    // With its length declared.
    let (head, body) = put_resource(server.port, "stage-db", "", &big);
    let declared = exchange(server.port, &head, &body).await;
    assert_eq!(declared.status, 413, "{declared:?}");
    assert_eq!(declared.code(), "body_too_large");

    // Chunked, so that only reading finds it too large.
    let mut chunked = Vec::new();
    for piece in big.as_bytes().chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "PUT /v1/resources/stage-db HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n{ADMIN_HEADERS}\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n",
        server.port
    );
    let read = exchange(server.port, &head, &chunked).await;
    assert_eq!(read.status, 413, "{read:?}");
    assert_eq!(read.code(), "body_too_large");

    // Nothing was stored.
    let head = format!(
        "GET /v1/resources/stage-db HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n{ADMIN_HEADERS}",
        server.port
    );
    assert_eq!(exchange(server.port, &head, b"").await.status, 404);
}

#[tokio::test]
async fn a_foreign_host_is_refused_and_the_servers_own_names_are_served() {
    let server = start(&["--public-url", "https://tb.example.com"]);
    let get = |host: &str| format!("GET /v1/resources HTTP/1.1\r\nhost: {host}\r\n{ADMIN_HEADERS}");

    for foreign in [
        "rebind.attacker.example".to_owned(),
        format!("rebind.attacker.example:{}", server.port),
        format!("127.0.0.1:{}", server.port + 1),
    ] {
        let answer = exchange(server.port, &get(&foreign), b"").await;
        assert_eq!(answer.status, 421, "{foreign}: {answer:?}");
        assert_eq!(answer.code(), "misdirected_request");
        assert!(answer.head.contains("x-content-type-options: nosniff"));
    }
    let no_host = exchange(
        server.port,
        &format!("GET /v1/resources HTTP/1.0\r\n{ADMIN_HEADERS}"),
        b"",
    )
    .await;
    assert_eq!(no_host.status, 421, "{no_host:?}");

    for own in [
        format!("127.0.0.1:{}", server.port),
        format!("localhost:{}", server.port),
        "tb.example.com:443".to_owned(),
    ] {
        let answer = exchange(server.port, &get(&own), b"").await;
        assert_eq!(answer.status, 200, "{own}: {answer:?}");
    }
}

#[tokio::test]
async fn a_cross_origin_write_is_refused_while_same_origin_and_curl_writes_work() {
    let server = start(&[]);
    let port = server.port;

    for origin in [
        "http://evil.example",
        "null",
        &format!("http://127.0.0.1:{}", port + 1),
    ] {
        let (head, body) =
            put_resource(port, "stage-db", &format!("origin: {origin}\r\n"), RESOURCE);
        let answer = exchange(port, &head, &body).await;
        assert_eq!(answer.status, 403, "{origin}: {answer:?}");
        assert_eq!(answer.code(), "cross_origin_request");
    }
    let head =
        format!("GET /v1/resources/stage-db HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{ADMIN_HEADERS}");
    assert_eq!(
        exchange(port, &head, b"").await.status,
        404,
        "the refused writes changed nothing"
    );

    let same = format!("origin: http://127.0.0.1:{port}\r\n");
    let (head, body) = put_resource(port, "stage-db", &same, RESOURCE);
    let answer = exchange(port, &head, &body).await;
    assert!(
        matches!(answer.status, 200 | 201),
        "same origin: {answer:?}"
    );

    let (head, body) = put_resource(port, "other-db", "", RESOURCE);
    let answer = exchange(port, &head, &body).await;
    assert!(matches!(answer.status, 200 | 201), "no Origin: {answer:?}");

    // A read from another origin is not refused here (the browser keeps its answer from the page).
    let head = format!(
        "GET /v1/resources HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\norigin: http://evil.example\r\n{ADMIN_HEADERS}"
    );
    assert_eq!(exchange(port, &head, b"").await.status, 200);
}

#[tokio::test]
async fn api_answers_carry_nosniff_and_a_csp_that_runs_nothing() {
    let server = start(&[]);
    for path in ["/v1/resources", "/v1/nowhere"] {
        let head = format!(
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n{ADMIN_HEADERS}",
            server.port
        );
        let answer = exchange(server.port, &head, b"").await;
        assert!(
            answer.head.contains("x-content-type-options: nosniff"),
            "{path}: {}",
            answer.head
        );
        assert!(
            answer
                .head
                .contains("content-security-policy: default-src 'none'; frame-ancestors 'none'"),
            "{path}: {}",
            answer.head
        );
    }
    // The portal page keeps its own policy.
    let head = format!("GET / HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n", server.port);
    let page = exchange(server.port, &head, b"").await;
    assert_eq!(page.status, 200);
    assert!(page.head.contains("script-src 'self'"), "{}", page.head);
}

/// Slack posts its interactions from its servers: no `Origin`, the public URL's host. The screening lets them
/// through to the route, which verifies them itself; a browser's cross-origin post to the same route is still
/// refused before it.
#[tokio::test]
async fn slacks_interactions_pass_the_screening_and_a_browsers_cross_origin_post_does_not() {
    let secrets = serde_json::json!({"_notifications": {"channels": [{
        "id": "slack-app", "kind": "slack_app",
        "bot_token": "xoxb-1-2-3", "signing_secret": "0123456789abcdef0123",
        "channel": "C0123456789",
    }]}});
    let server = start_with_secrets(&["--public-url", "https://tb.example.com"], Some(&secrets));
    let body = "payload=%7B%7D";
    let post = |extra: &str| {
        format!(
            "POST /slack/interactions HTTP/1.1\r\nhost: tb.example.com:443\r\n\
             content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\
             x-slack-request-timestamp: 1700000000\r\nx-slack-signature: v0=00\r\n{extra}",
            body.len()
        )
    };

    let from_slack = exchange(server.port, &post(""), body.as_bytes()).await;
    assert_eq!(from_slack.status, 401, "{from_slack:?}");
    assert_eq!(
        from_slack.code(),
        "invalid_signature",
        "reached the route, which judged it"
    );

    let from_a_page = exchange(
        server.port,
        &post("origin: https://evil.example\r\n"),
        body.as_bytes(),
    )
    .await;
    assert_eq!(from_a_page.status, 403, "{from_a_page:?}");
    assert_eq!(from_a_page.code(), "cross_origin_request");
}
