//! `serve`: the model behind an HTTP API and a web page. axum on tokio (the Rust ecosystem's usual
//! HTTP stack): handlers decode images on tokio's blocking pool, a model thread scores them in
//! dynamic batches ([`batcher`]), Grad-CAM overlays come from the same loaded model, and SIGINT or
//! SIGTERM stops accepting connections and lets the requests in flight finish.

mod api;
mod batcher;
mod metrics;

use crate::cli::ServeArgs;
use crate::explain::Explainer;
use crate::predict::Decoding;
use crate::scoring::{self, Scorer, Source};
use anyhow::{bail, Context, Result};
use batcher::{BatchConfig, Batcher};
use metrics::Metrics;
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What `GET /v1/model` says.
#[derive(Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub description: String,
    pub classes: Vec<String>,
    pub input: InputInfo,
    pub preprocessing: &'static str,
    pub interpolation: &'static str,
    pub version: &'static str,
    pub max_batch: usize,
    pub max_bytes: usize,
    /// Whether `POST /v1/explain` works (not for a quantized model).
    pub explain: bool,
}

#[derive(Serialize)]
pub struct InputInfo {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub layout: &'static str,
}

/// Everything the handlers share.
pub struct AppState {
    pub model: ModelInfo,
    pub decoding: Decoding,
    pub batcher: Batcher,
    /// Grad-CAM needs the float network: `None` when serving a quantized model.
    pub explainer: Option<Mutex<Explainer>>,
    pub metrics: Arc<Metrics>,
    pub max_bytes: usize,
    /// Images being decoded at once, at most one a core: more would only take turns with the
    /// model's threads for the same cores.
    pub decoders: tokio::sync::Semaphore,
}

/// The model the flags name, and a short name for it: the run's or the weights' folder.
fn source(args: &ServeArgs) -> Result<(Source<'_>, String)> {
    let source = args.model.source_or("serve", &args.quantized)?;
    let folder = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let name = match &source {
        Source::Run { dir, best } => format!(
            "{} ({})",
            folder(dir),
            crate::evaluate::checkpoint_name(*best)
        ),
        Source::Weights { dir, .. } => folder(dir),
        Source::Quantized { file } => folder(file),
    };
    Ok((source, name))
}

/// `--addr`, refusing a non-loopback address unless `--public`.
fn address(args: &ServeArgs) -> Result<SocketAddr> {
    let addr: SocketAddr = args.addr.parse().with_context(|| {
        format!(
            "--addr {:?}: expected IP:PORT, such as 127.0.0.1:8080",
            args.addr
        )
    })?;
    if !addr.ip().is_loopback() && !args.public {
        bail!(
            "--addr {addr} is reachable from other machines and the API has no authentication; add --public to listen there anyway"
        );
    }
    Ok(addr)
}

fn check(args: &ServeArgs) -> Result<()> {
    for (flag, v) in [
        ("--max-batch", args.max_batch),
        ("--queue", args.queue),
        ("--max-bytes", args.max_bytes),
    ] {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    Ok(())
}

/// Loads the model and builds the shared state; the model thread is returned to be joined.
fn build(args: &ServeArgs) -> Result<(AppState, std::thread::JoinHandle<()>)> {
    let (source, name) = source(args)?;
    let interp = args.interpolation.as_deref();
    // Grad-CAM runs on the float network: a quantized model is served without it.
    let (scorer, explainer) = match source {
        Source::Quantized { .. } => (Scorer::open(source, interp)?, None),
        _ => {
            let mut loaded = scoring::load(source, interp)?;
            let scorer = Scorer::compile(&mut loaded)?;
            (scorer, Some(Mutex::new(Explainer::new(loaded)?)))
        }
    };
    let Scorer {
        predictor,
        classes,
        preprocess,
        interpolation,
        description,
    } = scorer;
    let decoding = Decoding {
        height: predictor.height,
        width: predictor.width,
        interpolation,
        preprocess,
        limits: data::DecodeLimits::default(),
    };
    let model = ModelInfo {
        name,
        description,
        classes,
        input: InputInfo {
            height: predictor.height,
            width: predictor.width,
            channels: 3,
            layout: "NHWC",
        },
        preprocessing: preprocess.name(),
        interpolation: scoring::interpolation_name(interpolation),
        version: env!("CARGO_PKG_VERSION"),
        max_batch: args.max_batch,
        max_bytes: args.max_bytes,
        explain: explainer.is_some(),
    };
    let metrics = Arc::new(Metrics::new(args.max_batch)?);
    let cfg = BatchConfig {
        max_batch: args.max_batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        queue: args.queue,
    };
    let (batcher, worker) =
        Batcher::start(predictor, cfg, metrics.clone()).context("starting the model thread")?;
    let state = AppState {
        model,
        decoding,
        batcher,
        explainer,
        metrics,
        max_bytes: args.max_bytes,
        decoders: tokio::sync::Semaphore::new(rayon::current_num_threads().max(1)),
    };
    Ok((state, worker))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    eprintln!("Stopping: no new connections; finishing the requests in flight");
}

pub fn run(args: ServeArgs) -> Result<i32> {
    check(&args)?;
    let addr = address(&args)?;
    let (state, worker) = build(&args)?;
    let description = state.model.description.clone();
    let endpoints = match state.model.explain {
        true => "POST /v1/predict, POST /v1/explain, GET /v1/model, GET /healthz, GET /metrics",
        // A quantized model answers /v1/explain with 501: it is not offered.
        false => "POST /v1/predict, GET /v1/model, GET /healthz, GET /metrics",
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        println!("{description}");
        println!("Listening on http://{local}/ ({endpoints})");
        std::io::stdout().flush()?;
        axum::serve(listener, api::router(Arc::new(state)))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")
    })?;
    drop(runtime);
    // The state (and with it the queue's sender) is gone: the model thread ends.
    if worker.join().is_err() {
        bail!("the model thread failed");
    }
    eprintln!("Stopped");
    Ok(0)
}
