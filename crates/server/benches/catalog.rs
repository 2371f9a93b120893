//! Service catalogue benchmark: query latency of `/v1/service/:name` and `/v1/services` with
//! 10,000 registrations in the state (100 services × 100 instances, plus one service with
//! 10,000 instances in a second run), sequential requests on one keep-alive connection.
//!
//! `cargo bench -p server --bench catalog` (optional env: `CATALOG_BENCH_REQUESTS`, default
//! 2,000 per query shape). A dev server (in-memory store, one voter) on loopback; the client is a
//! minimal HTTP/1.1 client on the same runtime, so latencies include its cost.

use model::{ServiceHealth, ServiceRegistration};
use server::state::Command;
use server::ServerHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "support/mod.rs"]
mod support;
use support::{env_num, start};

fn registration(service: &str, i: usize) -> ServiceRegistration {
    let alloc = format!("{i:08x}-0000-4000-8000-{i:012x}");
    ServiceRegistration {
        id: format!("_nomad-task-{alloc}-web-{service}-http"),
        service_name: service.into(),
        namespace: "default".into(),
        node_id: format!("node-{}", i % 50),
        datacenter: "dc1".into(),
        job_id: format!("job-{service}"),
        alloc_id: alloc,
        tags: vec!["www".into(), if i % 2 == 0 { "traefik.enable=true" } else { "v1" }.into()],
        address: format!("10.0.{}.{}", (i / 250) % 250, i % 250),
        port: 20000 + (i % 12000) as u16,
        health: if i % 10 == 0 { ServiceHealth::Critical } else { ServiceHealth::Passing },
        ..ServiceRegistration::default()
    }
}

/// One GET on a keep-alive connection; returns the body length.
async fn get(conn: &mut BufReader<TcpStream>, host: &str, path: &str) -> usize {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.get_mut().write_all(req.as_bytes()).await.unwrap();
    let mut len = 0usize;
    let mut line = String::new();
    let mut status = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.unwrap();
        if status.is_empty() {
            status = line.clone();
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    assert!(status.contains(" 200 "), "{path}: {status}");
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await.unwrap();
    len
}

async fn measure(addr: &str, name: &str, path: &str, n: usize) {
    let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let bytes = get(&mut conn, addr, path).await;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        get(&mut conn, addr, path).await;
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<44} {:>8} B   p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms",
        bytes,
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*lat.last().unwrap())
    );
}

async fn fill(handle: &ServerHandle, regs: Vec<ServiceRegistration>) {
    for chunk in regs.chunks(500) {
        handle.write(Command::ServiceRegister { services: chunk.to_vec() }).await.unwrap();
    }
}

fn main() {
    let n = env_num("CATALOG_BENCH_REQUESTS", 2000) as usize;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        println!("command: cargo bench -p server --bench catalog (CATALOG_BENCH_REQUESTS={n})");
        let (handle, addr) = start().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let regs: Vec<_> =
            (0..10_000).map(|i| registration(&format!("svc-{:03}", i % 100), i)).collect();
        fill(&handle, regs).await;
        println!("10,000 registrations: 100 services x 100 instances");
        measure(&addr, "GET /v1/service/svc-042", "/v1/service/svc-042", n).await;
        let f = "/v1/service/svc-042?filter=Tags+contains+%22traefik.enable%3Dtrue%22&namespace=default&stale=";
        measure(&addr, "  + Traefik's filter (stale)", f, n).await;
        measure(&addr, "  + passing", "/v1/service/svc-042?passing", n).await;
        measure(&addr, "  + choose=3|key", "/v1/service/svc-042?choose=3%7Cclient", n).await;
        measure(&addr, "GET /v1/services", "/v1/services", n).await;
        handle.write(Command::ServiceDeregister {
            ids: (0..10_000).map(|i| registration(&format!("svc-{:03}", i % 100), i).id).collect(),
        })
        .await
        .unwrap();
        fill(&handle, (0..10_000).map(|i| registration("hello-web", i)).collect()).await;
        println!("10,000 registrations: 1 service x 10,000 instances");
        measure(&addr, "GET /v1/service/hello-web", "/v1/service/hello-web", n / 10).await;
        measure(&addr, "  + choose=3|key", "/v1/service/hello-web?choose=3%7Cclient", n / 10).await;
    });
}
