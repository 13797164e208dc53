//! Loopback floor: what the kernel alone charges a server for fan-out on
//! this machine.
//!
//! A fan-out server must write each subscriber its own frame, and over
//! loopback the writer's CPU also runs the receiver's TCP stack (the packet
//! is processed in the sender's system call). So "server CPU per delivery"
//! has a floor that no server can go under, and it varies from machine to
//! machine (and from day to day on shared VMs). This scenario measures it
//! with the fan-out's exact traffic: the same number of sockets, grouped in
//! the same channels, the same frame size and publish rate, written with one
//! plain `write` per frame by a thread pinned where the server runs, and
//! read by this process as the fan-out's subscribers are. Subtracting it
//! from a server's CPU per delivery leaves the server's own share.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use crate::procfs;
use crate::stats::round3;

#[derive(Clone, Debug)]
pub struct FloorOpts {
    pub sockets: usize,
    pub channels: usize,
    /// Bytes of one frame as the server sends it (WebSocket header included).
    pub frame_bytes: usize,
    /// "Publishes" per second; each writes one frame to every socket of one channel.
    pub rate: f64,
    pub secs: f64,
    /// Core for the writing thread (where the server would run).
    pub writer_core: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct FloorResult {
    pub sockets: usize,
    pub channels: usize,
    pub frame_bytes: usize,
    pub writes: u64,
    pub writes_per_s: f64,
    /// Bytes the reader got of those written (1.0 = all).
    pub read_ratio: f64,
    pub writer_user_cpu_s: f64,
    pub writer_sys_cpu_s: f64,
    /// The floor: writer CPU (user + system) per million single-frame writes.
    pub cpu_s_per_million_writes: f64,
    pub sys_cpu_s_per_million_writes: f64,
}

struct WriterReport {
    writes: u64,
    user_s: f64,
    sys_s: f64,
    elapsed_s: f64,
}

pub async fn floor(o: &FloorOpts) -> Result<FloorResult, String> {
    let sockets = o.sockets.max(1);
    let channels = o.channels.clamp(1, sockets);
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| format!("floor: bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    // The writer accepts on its own thread while the readers connect here.
    let frame_len = o.frame_bytes.max(1);
    let frame = vec![b'x'; frame_len];
    let (rate, secs, core) = (o.rate.max(0.001), o.secs, o.writer_core);
    let writer = std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || -> Result<WriterReport, String> {
            if let Some(core) = core {
                procfs::pin_current_thread(core).map_err(|e| format!("floor: pin: {e}"))?;
            }
            let mut conns = Vec::with_capacity(sockets);
            for _ in 0..sockets {
                let (s, _) = listener
                    .accept()
                    .map_err(|e| format!("floor: accept: {e}"))?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                conns.push(s);
            }
            std::thread::sleep(Duration::from_millis(500));
            let groups: Vec<Vec<&TcpStream>> = (0..channels)
                .map(|c| conns.iter().skip(c).step_by(channels).collect())
                .collect();
            let total = (rate * secs).round() as u64;
            let period = Duration::from_secs_f64(1.0 / rate);
            let (u0, s0) = procfs::thread_cpu_split();
            let start = Instant::now();
            let mut writes = 0u64;
            for tick in 0..total {
                let due = start + period.mul_f64(tick as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                for s in &groups[(tick % channels as u64) as usize] {
                    // `Write` is implemented for `&TcpStream`.
                    (&mut &**s)
                        .write_all(&frame)
                        .map_err(|e| format!("floor: write: {e}"))?;
                    writes += 1;
                }
            }
            let elapsed_s = start.elapsed().as_secs_f64();
            let (u1, s1) = procfs::thread_cpu_split();
            // Keep the sockets open until the readers have everything.
            std::thread::sleep(Duration::from_millis(300));
            drop(conns);
            Ok(WriterReport {
                writes,
                user_s: u1 - u0,
                sys_s: s1 - s0,
                elapsed_s,
            })
        })
        .map_err(|e| format!("floor: thread: {e}"))?;

    let read = Arc::new(AtomicU64::new(0));
    let mut readers = JoinSet::new();
    for _ in 0..sockets {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("floor: connect: {e}"))?;
        let read = read.clone();
        readers.spawn(async move {
            let mut s = s;
            let mut buf = vec![0u8; 4096];
            // Ends when the writer closes its side.
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                read.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
    let report = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "floor: writer panicked".to_string())??;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    readers.abort_all();

    let written = report.writes * frame_len as u64;
    let per_million = |cpu: f64| {
        if report.writes == 0 {
            0.0
        } else {
            round3(cpu * 1e6 / report.writes as f64)
        }
    };
    Ok(FloorResult {
        sockets,
        channels,
        frame_bytes: frame_len,
        writes: report.writes,
        writes_per_s: round3(report.writes as f64 / report.elapsed_s.max(1e-9)),
        read_ratio: if written == 0 {
            0.0
        } else {
            round3(read.load(Ordering::Relaxed) as f64 / written as f64)
        },
        writer_user_cpu_s: round3(report.user_s),
        writer_sys_cpu_s: round3(report.sys_s),
        cpu_s_per_million_writes: per_million(report.user_s + report.sys_s),
        sys_cpu_s_per_million_writes: per_million(report.sys_s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_the_fanout_pattern_and_the_reader_gets_every_byte() {
        let o = FloorOpts {
            sockets: 12,
            channels: 4,
            frame_bytes: 163,
            rate: 40.0,
            secs: 0.5,
            writer_core: None,
        };
        let r = floor(&o).await.unwrap();
        // 20 ticks, each writing to the 3 sockets of one channel.
        assert_eq!(r.writes, 60);
        assert_eq!(r.read_ratio, 1.0);
        assert_eq!(r.frame_bytes, 163);
        assert!(r.cpu_s_per_million_writes >= r.sys_cpu_s_per_million_writes);
    }
}

/// The HTTP floor: what answering one keep-alive HTTP/1.1 request costs on
/// this machine with no work at all behind it. A thread pinned where the
/// server runs reads each request (headers and `Content-Length` body) and
/// writes a fixed `200 {}`; the publish scenario's own client drives it.
/// The publish result minus this is the server's own cost per publish.
#[derive(Debug, Serialize)]
pub struct HttpFloorResult {
    pub requests: u64,
    pub requests_per_s: f64,
    pub server_user_cpu_s: f64,
    pub server_sys_cpu_s: f64,
    pub cpu_us_per_request: f64,
}

/// Runs `drive` against a do-nothing HTTP server pinned to `core` and
/// measures that server's CPU while `drive` runs. `drive` gets the address
/// and returns how many requests it completed.
pub async fn http_floor<F, Fut>(core: Option<usize>, drive: F) -> Result<HttpFloorResult, String>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<u64, String>>,
{
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| format!("http floor: bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::Builder::new()
        .name("http-floor".into())
        .spawn(move || -> Result<(f64, f64, f64), String> {
            if let Some(core) = core {
                procfs::pin_current_thread(core).map_err(|e| format!("http floor: pin: {e}"))?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let (u0, s0) = procfs::thread_cpu_split();
            let started = Instant::now();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| format!("http floor: {e}"))?;
                let local = tokio::task::LocalSet::new();
                local
                    .run_until(async move {
                        tokio::pin!(stop_rx);
                        loop {
                            tokio::select! {
                                _ = &mut stop_rx => break,
                                accepted = listener.accept() => {
                                    let Ok((s, _)) = accepted else { continue };
                                    s.set_nodelay(true).ok();
                                    tokio::task::spawn_local(answer(s));
                                }
                            }
                        }
                    })
                    .await;
                Ok::<(), String>(())
            })?;
            let (u1, s1) = procfs::thread_cpu_split();
            Ok((u1 - u0, s1 - s0, started.elapsed().as_secs_f64()))
        })
        .map_err(|e| format!("http floor: thread: {e}"))?;
    let driven = drive(addr).await;
    let _ = stop_tx.send(());
    let (user, sys, secs) = tokio::task::spawn_blocking(move || server.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "http floor: server panicked".to_string())??;
    let requests = driven?;
    Ok(HttpFloorResult {
        requests,
        requests_per_s: round3(requests as f64 / secs.max(1e-9)),
        server_user_cpu_s: round3(user),
        server_sys_cpu_s: round3(sys),
        cpu_us_per_request: if requests == 0 {
            0.0
        } else {
            round3((user + sys) * 1e6 / requests as f64)
        },
    })
}

/// One keep-alive connection of the HTTP floor: answer every request with
/// `200 {}` until the client closes.
async fn answer(mut s: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const RESPONSE: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        match request_len(&buf) {
            Some(n) => {
                buf.drain(..n);
                if s.write_all(RESPONSE).await.is_err() {
                    return;
                }
            }
            None => {
                let mut chunk = [0u8; 8192];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
    }
}

/// Length of the first complete HTTP/1.1 request in `buf` (head plus a
/// `Content-Length` body), if it is all there.
fn request_len(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..head]).ok()?;
    let body: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head + body).then_some(head + body)
}

#[cfg(test)]
mod http_tests {
    use super::*;

    #[test]
    fn request_len_waits_for_the_whole_body() {
        let req = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(request_len(req), Some(req.len()));
        assert_eq!(request_len(&req[..req.len() - 1]), None);
        assert_eq!(request_len(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
        assert_eq!(request_len(b"GET / HTTP/1.1\r\n"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_floor_answers_keep_alive_requests_and_counts_them() {
        let r = http_floor(None, |addr| async move {
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            use tokio::io::AsyncWriteExt;
            let mut n = 0;
            for _ in 0..3 {
                s.write_all(b"POST /e HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
                    .await
                    .map_err(|e| e.to_string())?;
                let mut buf = [0u8; 256];
                let got = s.read(&mut buf).await.map_err(|e| e.to_string())?;
                assert!(buf[..got].starts_with(b"HTTP/1.1 200 OK"));
                n += 1;
            }
            Ok(n)
        })
        .await
        .unwrap();
        assert_eq!(r.requests, 3);
    }
}
