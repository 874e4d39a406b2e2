//! `app serve` over real HTTP on 127.0.0.1: every status the API promises, batching under
//! concurrent requests (same answers as one at a time), a full queue, graceful shutdown, a trained
//! run, and the web page in headless Chromium. Every request loop here is bounded.

mod common;

use common::{app, run, s, shared, small_run, stderr};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn weights() -> PathBuf {
    shared().join("weights/mobilenet_v2_1.0_224")
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(shared().join("weights/test_images").join(name)).unwrap()
}

/// A running `app serve` on a free loopback port; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = app()
            .arg("serve")
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("app serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("Listening on ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let Ok(listening) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("app serve did not start listening within 60 s: {err}");
        };
        // An f32 model offers every endpoint, explain included.
        assert!(
            listening.contains("POST /v1/explain") && listening.contains("GET /metrics"),
            "{listening}"
        );
        let url = listening.split_whitespace().next().unwrap_or("");
        let url = url.trim_end_matches('/').to_owned();
        Server { child, url }
    }

    fn post(&self, path: &str, ctype: &str, body: &[u8]) -> (u16, ureq::Response) {
        let r = agent()
            .post(&format!("{}{path}", self.url))
            .set("content-type", ctype)
            .send_bytes(body);
        status_and_response(r)
    }

    fn get(&self, path: &str) -> (u16, ureq::Response) {
        status_and_response(agent().get(&format!("{}{path}", self.url)).call())
    }

    fn metrics(&self) -> String {
        self.get("/metrics").1.into_string().unwrap()
    }

    /// SIGTERM, then the exit status and stderr (waits at most 30 s).
    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                return (status.code(), err);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// ureq treats 4xx/5xx as errors; a test wants the status and the body either way.
fn status_and_response(r: Result<ureq::Response, ureq::Error>) -> (u16, ureq::Response) {
    match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(code, r)) => (code, r),
        Err(e) => panic!("no HTTP answer: {e}"),
    }
}

fn json(r: ureq::Response) -> Value {
    r.into_json().expect("a JSON body")
}

/// The error answer: its status and a message that mentions `needle`.
fn assert_error(got: (u16, ureq::Response), status: u16, needle: &str) {
    let (code, r) = got;
    let body = json(r);
    assert_eq!(code, status, "{body}");
    assert_eq!(body["status"], status);
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
}

fn multipart(field: &str, file: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----app-serve-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn top_labels(v: &Value) -> Vec<String> {
    v["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_endpoint_and_every_error_status() {
    let server = Server::start(&["--weights", s(&weights()), "--max-bytes", "300000"]);
    let (code, r) = server.get("/healthz");
    assert_eq!((code, json(r)["status"].as_str()), (200, Some("ok")));
    let (_, r) = server.get("/v1/model");
    let model = json(r);
    assert_eq!(model["classes"].as_array().unwrap().len(), 1000);
    assert_eq!(model["input"]["height"], 224);
    assert_eq!(model["preprocessing"], "mobilenet");
    assert_eq!(model["name"], "mobilenet_v2_1.0_224");

    let (code, r) = server.post("/v1/predict?top=3", "image/jpeg", &photo("hot_dog.jpg"));
    assert_eq!(code, 200);
    let v = json(r);
    assert_eq!(top_labels(&v)[0], "hotdog");
    let p: Vec<f64> = v["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert_eq!(p.len(), 3);
    assert!(p.windows(2).all(|w| w[0] >= w[1]) && p.iter().sum::<f64>() <= 1.0 + 1e-6);
    assert!(v["milliseconds"].as_f64().unwrap() > 0.0);

    let (ctype, body) = multipart("image", "cat.jpg", &photo("mountain_bike.jpeg"));
    let (code, r) = server.post("/v1/predict?top=1", &ctype, &body);
    assert_eq!(code, 200);
    assert_eq!(top_labels(&json(r)), ["mountain_bike"]);

    let truncated = &photo("hot_dog.jpg")[..3000];
    assert_error(
        server.post("/v1/predict", "image/jpeg", truncated),
        400,
        "truncated",
    );
    assert_error(
        server.post("/v1/predict", "image/jpeg", b"GIF? no, text"),
        400,
        "not an image",
    );
    assert_error(server.post("/v1/predict", "image/jpeg", b""), 400, "empty");
    assert_error(
        server.post("/v1/predict", "text/plain", b"hello"),
        415,
        "content type",
    );
    assert_error(
        server.post("/v1/predict", "image/bmp", &photo("cat.bmp")),
        413,
        "300000 bytes",
    );
    let (ctype, body) = multipart("image", "cat.bmp", &photo("cat.bmp"));
    let (code, _) = server.post("/v1/predict", &ctype, &body);
    assert_eq!(code, 413, "a form over the limit too");
    let jpeg = photo("hot_dog.jpg");
    assert_error(
        server.post("/v1/predict?top=0", "image/jpeg", &jpeg),
        400,
        "top=0",
    );
    assert_error(
        server.post("/v1/predict?top=1001", "image/jpeg", &jpeg),
        400,
        "1000",
    );
    assert_error(server.get("/v1/nothing"), 404, "no such endpoint");

    let (code, r) = server.post("/v1/explain?class=tabby", "image/jpeg", &jpeg);
    assert_eq!(code, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("x-class"), Some("tabby"));
    let mut png = Vec::new();
    r.into_reader().read_to_end(&mut png).unwrap();
    let img = image::load_from_memory(&png).unwrap();
    let (w, h) = image::image_dimensions(shared().join("weights/test_images/hot_dog.jpg")).unwrap();
    let scale = (800.0 / w.max(h) as f32).min(1.0);
    assert_eq!(img.width(), (w as f32 * scale).round() as u32);
    let (code, r) = server.post("/v1/explain", "image/jpeg", &jpeg);
    assert_eq!((code, r.header("x-class")), (200, Some("hotdog")));
    assert_error(
        server.post("/v1/explain?class=tabbby", "image/jpeg", &jpeg),
        400,
        "tabby",
    );

    let m = server.metrics();
    for line in [
        r#"app_requests_total{endpoint="/v1/predict",status="200"} 2"#,
        r#"app_requests_total{endpoint="/v1/predict",status="400"} 5"#,
        r#"app_requests_total{endpoint="/v1/predict",status="413"} 2"#,
        r#"app_requests_total{endpoint="/v1/predict",status="415"} 1"#,
        r#"app_requests_total{endpoint="/v1/explain",status="200"} 2"#,
        r#"app_request_errors_total{endpoint="/v1/predict"} 8"#,
        "app_batch_size_count 2",
        "app_queue_depth 0",
    ] {
        assert!(m.contains(line), "{line} not in\n{m}");
    }
    let (status, err) = server.terminate();
    assert_eq!(status, Some(0), "{err}");
}

/// 48 requests from 16 clients: batched (fewer model runs than requests), and every answer equal
/// to the one the same photo gets alone.
#[test]
fn concurrent_requests_are_batched_without_changing_answers() {
    let server = Server::start(&[
        "--weights",
        s(&weights()),
        "--max-batch",
        "8",
        "--max-wait-ms",
        "50",
    ]);
    let photos = ["hot_dog.jpg", "mountain_bike.jpeg", "cat.bmp"];
    let alone: Vec<Value> = photos
        .iter()
        .map(|p| json(server.post("/v1/predict?top=3", "image/jpeg", &photo(p)).1)["top"].clone())
        .collect();
    let url = server.url.clone();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                (0..3)
                    .map(|k| {
                        let which = (c + k) % 3;
                        let r = agent()
                            .post(&format!("{url}/v1/predict?top=3"))
                            .send_bytes(&photo(photos[which]))
                            .expect("200");
                        (which, json(r))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut batched = 0;
    for c in clients {
        for (which, v) in c.join().unwrap() {
            for (got, want) in v["top"]
                .as_array()
                .unwrap()
                .iter()
                .zip(alone[which].as_array().unwrap())
            {
                assert_eq!(got["index"], want["index"]);
                let (a, b) = (
                    got["probability"].as_f64().unwrap(),
                    want["probability"].as_f64().unwrap(),
                );
                assert!((a - b).abs() < 1e-5, "batched {a} vs alone {b}");
            }
            if v["batch_size"].as_u64().unwrap() > 1 {
                batched += 1;
            }
        }
    }
    assert!(batched > 0, "no request shared a batch");
    let m = server.metrics();
    let runs: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("app_batch_size_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(runs < 51.0, "{runs} model runs for 51 requests");
    assert!(
        m.contains(r#"app_requests_total{endpoint="/v1/predict",status="200"} 51"#),
        "{m}"
    );
}

/// A queue of one and batches of one: under 64 requests from 16 clients some are refused with
/// 503 and JSON, the others answered; none hangs.
#[test]
fn a_full_queue_answers_503() {
    let server = Server::start(&[
        "--weights",
        s(&weights()),
        "--max-batch",
        "1",
        "--queue",
        "1",
        "--max-wait-ms",
        "0",
    ]);
    let url = server.url.clone();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                (0..4)
                    .map(|_| {
                        let r = agent()
                            .post(&format!("{url}/v1/predict"))
                            .send_bytes(&photo("mountain_bike.jpeg"));
                        let (code, r) = status_and_response(r);
                        let body = json(r);
                        (code, body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut codes = std::collections::BTreeMap::new();
    for c in clients {
        for (code, body) in c.join().unwrap() {
            if code == 503 {
                assert!(body["error"].as_str().unwrap().contains("busy"), "{body}");
            }
            *codes.entry(code).or_insert(0) += 1;
        }
    }
    assert_eq!(
        codes.keys().copied().collect::<Vec<_>>(),
        [200, 503],
        "{codes:?}"
    );
}

/// SIGTERM while requests wait in the batcher: each still gets its answer, then the server exits 0.
#[test]
fn sigterm_finishes_the_requests_in_flight() {
    let server = Server::start(&[
        "--weights",
        s(&weights()),
        "--max-batch",
        "16",
        "--max-wait-ms",
        "1500",
    ]);
    let url = server.url.clone();
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let r = agent()
                    .post(&format!("{url}/v1/predict?top=1"))
                    .send_bytes(&photo("hot_dog.jpg"));
                let (code, r) = status_and_response(r);
                (code, json(r))
            })
        })
        .collect();
    let started = Instant::now();
    while !server.metrics().contains("app_queue_depth 6") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            server.metrics()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, err) = server.terminate();
    for c in clients {
        let (code, v) = c.join().unwrap();
        assert_eq!(code, 200, "{v}");
        assert_eq!(top_labels(&v), ["hotdog"]);
        assert_eq!(v["batch_size"], 6);
    }
    assert_eq!(status, Some(0), "{err}");
    assert!(err.contains("Stopping") && err.contains("Stopped"), "{err}");
}

#[test]
fn a_trained_run_serves_its_classes_and_other_addresses_need_public() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let r = small_run(&dir, &[]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let server = Server::start(&["--checkpoint", s(&dir), "--best"]);
    let model = json(server.get("/v1/model").1);
    assert_eq!(model["classes"], config["classes"]);
    assert_eq!(model["name"], "run (best.npz)");
    let football = std::fs::read_dir(shared().join("data/sports15/test/football"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (code, r) = server.post(
        "/v1/predict?top=2",
        "image/jpeg",
        &std::fs::read(football).unwrap(),
    );
    assert_eq!(code, 200);
    let v = json(r);
    let classes = config["classes"].as_array().unwrap();
    for l in top_labels(&v) {
        assert!(classes.iter().any(|c| c == &l), "{l}");
    }
    drop(server);

    let r = run(&["serve", "--weights", s(&weights()), "--addr", "0.0.0.0:0"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("--public"), "{}", stderr(&r));
}

// ---- the page, in headless Chromium driven through WebDriver (chromedriver) ----

/// Chromium and chromedriver, if installed. Under CI=true a missing browser fails the test.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.is_file());
    let chromium = find(&[
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]);
    let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but Chromium or chromedriver is missing (.ci/run installs Debian's chromium and chromium-driver)"
            );
            eprintln!(
                "SKIPPED the browser test: install Debian's chromium and chromium-driver to run it"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A WebDriver session; the driver is killed when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start(
        chromium: &std::path::Path,
        chromedriver: &std::path::Path,
        profile: &std::path::Path,
    ) -> Browser {
        let port = free_port();
        let driver = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1100,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let started = Instant::now();
        let session = loop {
            match agent().post(&format!("{base}/session")).send_json(&caps) {
                Ok(r) => break json(r)["value"]["sessionId"].as_str().unwrap().to_owned(),
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    eprintln!("waiting for chromedriver: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        Browser {
            driver,
            base,
            session,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r = match body {
            Some(b) => agent().request(method, &url).send_json(b),
            None => agent().request(method, &url).call(),
        };
        let (code, r) = status_and_response(r);
        let v = json(r);
        assert_eq!(code, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    /// The first element matching `css`, waiting up to 60 s for it.
    fn wait_for(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let r = agent()
                .post(&url)
                .send_json(serde_json::json!({"using": "css selector", "value": css}));
            if let Ok(r) = r {
                return json(r)["value"][ELEMENT].as_str().unwrap().to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no {css} after 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = agent()
            .delete(&format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The page at `/` in headless Chromium: a real photo picked in the file input comes back with
/// its label in the DOM, five bars and the Grad-CAM image; a screenshot is kept as an artifact
/// (`target/tmp/serve_page.png`).
#[test]
fn the_page_classifies_a_photo_in_chromium() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    let server = Server::start(&["--weights", s(&weights())]);
    let profile = tempfile::tempdir().unwrap();
    let b = Browser::start(&chromium, &chromedriver, profile.path());
    b.cmd(
        "POST",
        "/url",
        Some(serde_json::json!({"url": format!("{}/", server.url)})),
    );
    let input = b.wait_for("#file");
    let photo = shared().join("weights/test_images/mountain_bike.jpeg");
    let photo = photo.canonicalize().unwrap();
    b.cmd(
        "POST",
        &format!("/element/{input}/value"),
        Some(serde_json::json!({"text": photo.to_str().unwrap()})),
    );
    let label = b.wait_for(".card.done .label");
    let text = b.cmd("GET", &format!("/element/{label}/text"), None);
    assert_eq!(text, "mountain_bike");
    let bars = b.cmd(
        "POST",
        "/execute/sync",
        Some(serde_json::json!({"script": "return document.querySelectorAll('.card.done .row').length", "args": []})),
    );
    assert_eq!(bars, 5);
    b.wait_for(".card img.cam");
    let started = Instant::now();
    loop {
        let w = b.cmd(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({"script": "return document.querySelector('.card img.cam').naturalWidth", "args": []})),
        );
        if w.as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the heatmap never loaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let shot = b.cmd("GET", "/screenshot", None);
    let png = base64_decode(shot.as_str().unwrap());
    let img = image::load_from_memory(&png).expect("the screenshot is a PNG");
    assert!(img.width() >= 800);
    let artifact = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve_page.png");
    std::fs::write(&artifact, &png).unwrap();
    eprintln!("screenshot: {}", artifact.display());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64 screenshot")
}
