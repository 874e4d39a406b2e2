//! The server's Prometheus metrics (text exposition format at `GET /metrics`): requests by endpoint
//! and status, errors, request latency, the sizes of the batches the model ran, the queue's depth.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub latency: HistogramVec,
    pub batch_size: Histogram,
    pub queue_depth: IntGauge,
}

/// Latency buckets in seconds, from 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new(max_batch: usize) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("app_requests_total", "HTTP requests by endpoint and status"),
            &["endpoint", "status"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "app_request_errors_total",
                "requests answered with a 4xx or 5xx status, by endpoint",
            ),
            &["endpoint"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "app_request_duration_seconds",
                "time from the request to its answer, by endpoint",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["endpoint"],
        )?;
        let mut sizes: Vec<f64> = (0..=max_batch.max(1).ilog2())
            .map(|k| (1u64 << k) as f64)
            .collect();
        if sizes.last() != Some(&(max_batch as f64)) {
            sizes.push(max_batch as f64);
        }
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("app_batch_size", "images scored together in one model run")
                .buckets(sizes),
        )?;
        let queue_depth = IntGauge::new("app_queue_depth", "images waiting to be scored")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            errors,
            latency,
            batch_size,
            queue_depth,
        })
    }

    /// One answered request.
    pub fn observe(&self, endpoint: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[endpoint, &status.to_string()])
            .inc();
        if status >= 400 {
            self.errors.with_label_values(&[endpoint]).inc();
        }
        self.latency.with_label_values(&[endpoint]).observe(seconds);
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail but for invalid names, which are constants.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# metrics could not be encoded: {e}\n");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_appear_in_the_text_format() {
        let m = Metrics::new(16).unwrap();
        m.observe("/v1/predict", 200, 0.004);
        m.observe("/v1/predict", 400, 0.001);
        m.batch_size.observe(3.0);
        let text = m.render();
        assert!(text.contains(r#"app_requests_total{endpoint="/v1/predict",status="200"} 1"#));
        assert!(text.contains(r#"app_request_errors_total{endpoint="/v1/predict"} 1"#));
        assert!(
            text.contains(r#"app_batch_size_bucket{le="4"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"app_batch_size_bucket{le="2"} 0"#),
            "{text}"
        );
        assert!(text.contains("app_request_duration_seconds_count{endpoint=\"/v1/predict\"} 2"));
    }

    #[test]
    fn batch_buckets_end_at_the_largest_batch() {
        let m = Metrics::new(12).unwrap();
        m.batch_size.observe(12.0);
        let text = m.render();
        assert!(
            text.contains(r#"app_batch_size_bucket{le="8"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"app_batch_size_bucket{le="12"} 1"#),
            "{text}"
        );
    }
}
