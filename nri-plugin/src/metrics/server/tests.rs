use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

fn request(method: Method, uri: &str) -> Request<()> {
    Request::builder().method(method).uri(uri).body(()).unwrap()
}

#[test]
fn addresses() {
    assert_eq!(parse_address("off").unwrap(), None);
    assert_eq!(parse_address(" ").unwrap(), None);
    assert_eq!(
        parse_address("127.0.0.1:9464").unwrap(),
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let err = parse_address("localhost").unwrap_err().to_string();
    assert!(err.contains("'localhost'"), "{err}");
}

#[test]
fn routes() {
    let ok = respond(&request(Method::GET, "/metrics?x=1"), || "m 1\n".into());
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.body(), "m 1\n");
    assert_eq!(
        ok.headers()[CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let status = |method, uri| respond(&request(method, uri), String::new).status();
    assert_eq!(status(Method::GET, "/"), StatusCode::OK);
    assert_eq!(status(Method::GET, "/nope"), StatusCode::NOT_FOUND);
    assert_eq!(
        status(Method::POST, "/metrics"),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

fn limits(connections: usize, read_ms: u64, exchange_ms: u64) -> Limits {
    Limits {
        connections,
        read_timeout: Duration::from_millis(read_ms),
        exchange_timeout: Duration::from_millis(exchange_ms),
    }
}

async fn start(limits: Limits) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(serve(listener, limits, || "nri_chaos_x 1\n".to_string()));
    (address, task)
}

async fn get(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn serves_over_tcp_one_request_per_connection() {
    let (address, task) = start(Limits::DEFAULT).await;
    let response = get(address).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("content-type: text/plain; version=0.0.4"),
        "{response}"
    );
    assert!(response.contains("connection: close"), "{response}");
    assert!(response.ends_with("\r\n\r\nnri_chaos_x 1\n"), "{response}");
    task.abort();
}

/// Clients that connect and send nothing hold at most `connections` slots, and only until the
/// read timeout closes them: the next client waits for a slot, then is answered.
#[tokio::test]
async fn idle_connections_are_capped_and_closed_at_the_read_timeout() {
    let limits = limits(2, 300, 5000);
    let (address, task) = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..limits.connections {
        idle.push(TcpStream::connect(address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let response = get(address).await;
    let waited = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        waited >= Duration::from_millis(200),
        "answered after {waited:?} while every slot was held by an idle client"
    );
    for mut stream in idle {
        let mut rest = Vec::new();
        // The server closed it (a 408 or nothing, then EOF); a hang fails the timeout.
        tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest))
            .await
            .expect("an idle connection was not closed at the read timeout")
            .ok();
    }
    task.abort();
}

/// A slow client that trickles its request head is cut at the exchange deadline.
#[tokio::test]
async fn a_trickling_client_is_cut_at_the_deadline() {
    let (address, task) = start(limits(1, 30_000, 300)).await;
    let mut slow = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    let closed = async {
        loop {
            if slow.write_all(b"X").await.is_err() {
                return;
            }
            let mut byte = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(50), slow.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), closed)
        .await
        .expect("the trickling client was never cut");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // The slot is free again.
    assert!(get(address).await.starts_with("HTTP/1.1 200 OK\r\n"));
    task.abort();
}
