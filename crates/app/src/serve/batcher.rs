//! Dynamic batching, as TensorFlow Serving and text-embeddings-inference do it: requests put their
//! decoded image on a bounded queue; one model thread takes the first waiting image, gathers more
//! until the batch is full or the first has waited `max_wait`, runs them as one batch through the
//! folded plan and answers each. A full queue is refused at once (the caller answers 503).

use super::metrics::Metrics;
use mobilenet::Predictor;
use nn::Tensor;
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What one request gets back: its class probabilities and the size of the batch it ran in.
pub type Scored = Result<(Vec<f32>, usize), String>;

/// One image waiting to be scored.
struct Job {
    pixels: Vec<f32>,
    reply: oneshot::Sender<Scored>,
}

#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub queue: usize,
}

/// The queue's sending side; dropping every clone stops the model thread once the queue is empty.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

/// The queue already holds as many images as it may.
#[derive(Debug)]
pub struct QueueFull;

impl Batcher {
    /// Starts the model thread that owns `predictor`.
    pub fn start(
        predictor: Predictor,
        cfg: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Batcher, JoinHandle<()>)> {
        let (tx, rx) = sync_channel(cfg.queue.max(1));
        let m = metrics.clone();
        let worker = std::thread::Builder::new()
            .name("model".into())
            .spawn(move || serve_batches(rx, &predictor, cfg, &m))?;
        Ok((Batcher { tx, metrics }, worker))
    }

    /// Queues one preprocessed image (`H * W * 3` floats); the receiver gets its probabilities.
    pub fn submit(&self, pixels: Vec<f32>) -> Result<oneshot::Receiver<Scored>, QueueFull> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { pixels, reply }) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                Ok(rx)
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(QueueFull),
        }
    }
}

/// The first waiting job, then whatever joins within `max_wait` of it, up to `max_batch`.
/// `None` once every sender is gone and the queue is empty.
fn gather(rx: &Receiver<Job>, cfg: BatchConfig) -> Option<Vec<Job>> {
    let first = rx.recv().ok()?;
    let deadline = Instant::now() + cfg.max_wait;
    let mut jobs = vec![first];
    while jobs.len() < cfg.max_batch {
        match rx.try_recv() {
            Ok(j) => {
                jobs.push(j);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left) {
            Ok(j) => jobs.push(j),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(jobs)
}

fn serve_batches(rx: Receiver<Job>, predictor: &Predictor, cfg: BatchConfig, metrics: &Metrics) {
    while let Some(jobs) = gather(&rx, cfg) {
        metrics.queue_depth.sub(jobs.len() as i64);
        // A client that went away does not need its image scored.
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if jobs.is_empty() {
            continue;
        }
        let n = jobs.len();
        metrics.batch_size.observe(n as f64);
        let (h, w) = (predictor.height, predictor.width);
        let mut pixels = Vec::with_capacity(n * h * w * 3);
        let mut replies = Vec::with_capacity(n);
        for j in jobs {
            pixels.extend_from_slice(&j.pixels);
            replies.push(j.reply);
        }
        let scored = Tensor::from_shape_vec(vec![n, h, w, 3], pixels)
            .map_err(|e| e.to_string())
            .and_then(|x| predictor.predict(&x).map_err(|e| e.to_string()));
        for (i, reply) in replies.into_iter().enumerate() {
            let answer = match &scored {
                Ok(p) => Ok((p.row(i).to_vec(), n)),
                Err(e) => Err(format!("the model failed: {e}")),
            };
            // The client may have gone meanwhile; nothing to do then.
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> (Job, oneshot::Receiver<Scored>) {
        let (reply, rx) = oneshot::channel();
        (
            Job {
                pixels: vec![],
                reply,
            },
            rx,
        )
    }

    #[test]
    fn gathers_what_is_waiting_up_to_the_batch_size() {
        let (tx, rx) = sync_channel(10);
        let mut keep = vec![];
        for _ in 0..5 {
            let (j, r) = job();
            tx.send(j).unwrap();
            keep.push(r);
        }
        let cfg = BatchConfig {
            max_batch: 3,
            max_wait: Duration::from_millis(0),
            queue: 10,
        };
        assert_eq!(gather(&rx, cfg).unwrap().len(), 3);
        assert_eq!(gather(&rx, cfg).unwrap().len(), 2);
        drop(tx);
        assert!(gather(&rx, cfg).is_none(), "senders gone and queue empty");
    }

    #[test]
    fn waits_for_late_jobs_no_longer_than_max_wait() {
        let (tx, rx) = sync_channel(10);
        let (j, _r1) = job();
        tx.send(j).unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let (j, r) = job();
            tx.send(j).unwrap();
            std::thread::sleep(Duration::from_millis(2000));
            r
        });
        let cfg = BatchConfig {
            max_batch: 4,
            max_wait: Duration::from_millis(300),
            queue: 10,
        };
        let t = Instant::now();
        let got = gather(&rx, cfg).unwrap();
        let waited = t.elapsed();
        assert_eq!(got.len(), 2, "the late job joined");
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_millis(1500), "{waited:?}");
        drop(late);
    }
}
