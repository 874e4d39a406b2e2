//! `serve-load`: a bounded load test of `app serve` from this machine's loopback: `--requests`
//! POSTs of real photos to `/v1/predict` from `--concurrency` clients (each client one keep-alive
//! connection, photos taken in turn), then one JSON line: throughput, p50/p99 latency, statuses.
//!
//!     cargo run --release -p e2e-bench --bin serve-load -- --url http://127.0.0.1:8080 \
//!         --requests 200 --concurrency 16 photos/*.jpg

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The server, such as http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// Requests in all.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Clients sending at the same time.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// A label for the JSON line (batching on/off, say).
    #[arg(long, default_value = "serve")]
    label: String,
    /// Photos to send (in turn).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
}

/// The p-th percentile (0..=100) of sorted values, nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 || args.requests == 0 {
        bail!("--requests and --concurrency must be at least 1");
    }
    let photos: Arc<Vec<Vec<u8>>> = Arc::new(
        args.photos
            .iter()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .collect::<Result<_>>()?,
    );
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/v1/predict?top=1", args.url.trim_end_matches('/'));
    let started = Instant::now();
    let clients: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (photos, next, url) = (photos.clone(), next.clone(), url.clone());
            let total = args.requests;
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(120))
                    .build();
                let mut seen = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return seen;
                    }
                    let t = Instant::now();
                    let status = match agent
                        .post(&url)
                        .set("content-type", "image/jpeg")
                        .send_bytes(&photos[i % photos.len()])
                    {
                        Ok(r) => {
                            let _ = r.into_string();
                            200
                        }
                        Err(ureq::Error::Status(code, _)) => code,
                        Err(_) => 0,
                    };
                    seen.push((status, t.elapsed().as_secs_f64() * 1e3));
                }
            })
        })
        .collect();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut ok_ms = Vec::new();
    for c in clients {
        for (status, ms) in c.join().map_err(|_| anyhow::anyhow!("a client panicked"))? {
            *statuses.entry(status).or_default() += 1;
            if status == 200 {
                ok_ms.push(ms);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    ok_ms.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "peer": "this",
        "task": "serve-load",
        "label": args.label,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "ok": ok_ms.len(),
        "statuses": statuses,
        "seconds": seconds,
        "images_per_s": ok_ms.len() as f64 / seconds,
        "p50_ms": percentile(&ok_ms, 50.0),
        "p99_ms": percentile(&ok_ms, 99.0),
    });
    println!("{line}");
    Ok(())
}
