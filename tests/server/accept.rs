//! Connection acceptance: the header-read timeout and the connection cap.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads until the server closes the connection; fails after PATIENCE.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    within("the server closes the connection", async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

#[tokio::test]
async fn a_connection_without_a_request_head_in_time_is_closed() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let (app, _) = app();
    let server = mesh
        .server("reviews")
        .header_read_timeout(Duration::from_millis(200))
        .serve(listener, app.clone().service())
        .await
        .unwrap();
    // Silent: not even enough bytes to tell HTTP/1.1 from HTTP/2.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    closed_by_server(&mut silent).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Half a request head.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    closed_by_server(&mut slow).await;
    // A whole one is answered.
    let mut quick = tokio::net::TcpStream::connect(addr).await.unwrap();
    quick
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_by_server(&mut quick).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn connections_over_the_cap_are_closed() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let (app, _) = app();
    let server = mesh
        .server("reviews")
        .max_connections(1)
        .serve(listener, app.clone().service())
        .await
        .unwrap();
    let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = [0u8; 12];
    within("the first answer", first.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = second.write_all(request).await;
    assert!(
        closed_by_server(&mut second).await.is_empty(),
        "never answered"
    );
    // Once the first closes, a connection is taken again.
    drop(first);
    within("a place under the cap", async {
        loop {
            let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = third
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await;
            if closed_by_server(&mut third)
                .await
                .starts_with(b"HTTP/1.1 200")
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    within("shutdown", server.shutdown()).await.unwrap();
}
