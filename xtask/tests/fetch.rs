//! `cargo xtask fetch` against a real HTTP server on 127.0.0.1 started by the test: no internet.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

const H5: &str = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5";

/// Serves files by name; `cut` lists names whose next N full responses stop half-way.
struct Server {
    url: String,
    cut: Arc<Mutex<HashMap<String, usize>>>,
    hits: Arc<AtomicUsize>,
}

fn handle(mut s: TcpStream, files: &HashMap<String, Vec<u8>>, cut: &Mutex<HashMap<String, usize>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse::<usize>().ok();
        }
    }
    let Some(body) = files.get(&path) else {
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let start = range.unwrap_or(0).min(body.len());
    let rest = &body[start..];
    let status = if range.is_some() {
        format!(
            "206 Partial Content\r\nContent-Range: bytes {start}-{}/{}",
            body.len() - 1,
            body.len()
        )
    } else {
        "200 OK".into()
    };
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        rest.len()
    );
    let mut c = cut.lock().unwrap();
    let n = c.get(&path).copied().unwrap_or(0);
    if n > 0 {
        c.insert(path, n - 1);
        drop(c);
        let _ = s.write_all(&rest[..rest.len() / 2]);
        let _ = s.flush();
        return; // connection dropped half-way
    }
    drop(c);
    let _ = s.write_all(rest);
}

fn serve(files: HashMap<String, Vec<u8>>) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let cut = Arc::new(Mutex::new(HashMap::new()));
    let hits = Arc::new(AtomicUsize::new(0));
    let (c2, h2) = (Arc::clone(&cut), Arc::clone(&hits));
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            h2.fetch_add(1, Ordering::SeqCst);
            let (f, c) = (Arc::clone(&files), Arc::clone(&c2));
            std::thread::spawn(move || handle(s, &f, &c));
        }
    });
    Server { url, cut, hits }
}

fn weights_server() -> Server {
    let mut files = HashMap::new();
    files.insert(
        H5.to_string(),
        std::fs::read(shared().join("weights/h5").join(H5)).unwrap(),
    );
    files.insert(
        "imagenet_class_index.json".to_string(),
        std::fs::read(shared().join("weights/imagenet_class_index.json")).unwrap(),
    );
    serve(files)
}

fn xtask(root: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("fetch")
        .args(args)
        .args(["--root", root.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    eprintln!(
        "$ xtask fetch {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn weights_args(s: &Server) -> Vec<String> {
    [
        "weights",
        "--alpha",
        "0.35",
        "--no-top",
        "--base-url",
        &s.url,
        "--class-index-url",
        &format!("{}/imagenet_class_index.json", s.url),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Every array of the converted tree equals the reference tree exactly.
fn assert_same_tree(ours: &Path, reference: &Path) {
    let mut n = 0;
    for layer in std::fs::read_dir(reference).unwrap() {
        let layer = layer.unwrap().path();
        for f in std::fs::read_dir(&layer).unwrap() {
            let f = f.unwrap().path();
            let mine = ours
                .join(layer.file_name().unwrap())
                .join(f.file_name().unwrap());
            let a: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&f).unwrap();
            let b: ndarray::ArrayD<f32> =
                ndarray_npy::read_npy(&mine).unwrap_or_else(|e| panic!("{}: {e}", mine.display()));
            assert_eq!(a, b, "{}", mine.display());
            n += 1;
        }
    }
    assert_eq!(n, 260);
    let count: usize = std::fs::read_dir(ours)
        .unwrap()
        .map(|l| std::fs::read_dir(l.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(count, 260, "no extra arrays");
}

#[test]
fn full_fetch_converts_exactly_and_second_run_does_nothing() {
    let s = weights_server();
    let root = tempfile::tempdir().unwrap();
    let out = xtask(root.path(), &refs(&weights_args(&s)));
    assert!(out.status.success(), "{}", text(&out));
    assert_same_tree(
        &root.path().join("weights/mobilenet_v2_0.35_224_no_top"),
        &shared().join("weights/mobilenet_v2_0.35_224_no_top"),
    );
    let sums = std::fs::read_to_string(root.path().join("weights/SHA256SUMS")).unwrap();
    assert!(sums.contains(H5), "{sums}");
    assert!(
        !root
            .path()
            .join("weights/imagenet_class_index.json")
            .exists(),
        "a no-top model needs no ImageNet labels"
    );
    let hits = s.hits.load(Ordering::SeqCst);
    let again = xtask(root.path(), &refs(&weights_args(&s)));
    assert!(again.status.success());
    assert!(
        text(&again).contains("already in place"),
        "{}",
        text(&again)
    );
    assert_eq!(
        s.hits.load(Ordering::SeqCst),
        hits,
        "nothing downloaded the second time"
    );
}

#[test]
fn connection_cut_half_way_is_resumed() {
    let s = weights_server();
    s.cut.lock().unwrap().insert(H5.to_string(), 2);
    let root = tempfile::tempdir().unwrap();
    let out = xtask(root.path(), &refs(&weights_args(&s)));
    assert!(out.status.success(), "{}", text(&out));
    assert_same_tree(
        &root.path().join("weights/mobilenet_v2_0.35_224_no_top"),
        &shared().join("weights/mobilenet_v2_0.35_224_no_top"),
    );
    assert!(!root.path().join(format!("weights/{H5}.part")).exists());
}

#[test]
fn hash_mismatch_deletes_and_names_both_hashes() {
    let s = weights_server();
    let root = tempfile::tempdir().unwrap();
    let mut args = weights_args(&s);
    let wrong = "0".repeat(64);
    args.extend(["--sha256".to_string(), wrong.clone()]);
    let out = xtask(root.path(), &refs(&args));
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("sha256 mismatch") && t.contains(&wrong), "{t}");
    let actual = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(std::fs::read(shared().join("weights/h5").join(H5)).unwrap());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert!(t.contains(&actual), "{t}");
    assert!(!root.path().join("weights").join(H5).exists(), "deleted");
    assert!(
        !root
            .path()
            .join("weights/mobilenet_v2_0.35_224_no_top")
            .exists(),
        "nothing converted"
    );
}

#[test]
fn from_a_local_file() {
    let root = tempfile::tempdir().unwrap();
    let s = weights_server(); // only for the class index
    let h5 = shared().join("weights/h5").join(H5);
    let out = xtask(
        root.path(),
        &[
            "weights",
            "--alpha",
            "0.35",
            "--no-top",
            "--from",
            h5.to_str().unwrap(),
            "--class-index-url",
            &format!("{}/imagenet_class_index.json", s.url),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_same_tree(
        &root.path().join("weights/mobilenet_v2_0.35_224_no_top"),
        &shared().join("weights/mobilenet_v2_0.35_224_no_top"),
    );
}

fn sports_zip(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt = zip::write::SimpleFileOptions::default();
    for split in ["train", "valid", "test"] {
        for class in ["archery", "golf", "air hockey"] {
            let dir = shared().join("data/sports15").join(split).join(class);
            let files: Vec<PathBuf> = if dir.is_dir() {
                std::fs::read_dir(&dir)
                    .unwrap()
                    .take(2)
                    .map(|e| e.unwrap().path())
                    .collect()
            } else {
                Vec::new()
            };
            for f in files.iter().chain(
                if class == "air hockey" {
                    vec![shared().join("data/sports15/train/hockey/001.jpg")]
                } else {
                    vec![]
                }
                .iter(),
            ) {
                w.start_file(
                    format!(
                        "{split}/{class}/{}",
                        f.file_name().unwrap().to_string_lossy()
                    ),
                    opt,
                )
                .unwrap();
                w.write_all(&std::fs::read(f).unwrap()).unwrap();
            }
        }
    }
    w.start_file("sports.csv", opt).unwrap();
    w.write_all(b"filepaths,labels\n").unwrap();
    for (name, body) in extra {
        w.start_file(*name, opt).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn data_download_keeps_the_chosen_classes() {
    let mut files = HashMap::new();
    files.insert("sports.zip".to_string(), sports_zip(&[]));
    let s = serve(files);
    let root = tempfile::tempdir().unwrap();
    let out = xtask(
        root.path(),
        &[
            "data",
            "--classes",
            "archery,golf",
            "--url",
            &format!("{}/sports.zip", s.url),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let d = root.path().join("data/sports");
    for split in ["train", "valid", "test"] {
        let classes: Vec<String> = std::fs::read_dir(d.join(split))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(classes.len(), 2, "{split}: {classes:?}");
        assert_eq!(
            std::fs::read_dir(d.join(split).join("golf"))
                .unwrap()
                .count(),
            2
        );
    }
    let again = xtask(
        root.path(),
        &["data", "--url", &format!("{}/sports.zip", s.url)],
    );
    assert!(text(&again).contains("already in place"));
}

#[test]
fn zip_slip_is_rejected_with_nothing_written() {
    let root = tempfile::tempdir().unwrap();
    let evil = root.path().join("evil.zip");
    std::fs::write(&evil, sports_zip(&[("../../escaped.txt", b"gotcha")])).unwrap();
    let out = xtask(root.path(), &["data", "--from", evil.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("unsafe entry"), "{}", text(&out));
    assert!(!root.path().join("data/sports").exists());
    assert!(
        !root.path().join("escaped.txt").exists()
            && !root.path().parent().unwrap().join("escaped.txt").exists()
    );
}

#[test]
fn interrupted_download_resumes_in_the_next_run() {
    let s = weights_server();
    // Cut more times than one run retries: the run fails, keeps the partial file; the next run finishes it.
    s.cut.lock().unwrap().insert(H5.to_string(), 5);
    let root = tempfile::tempdir().unwrap();
    let first = xtask(root.path(), &refs(&weights_args(&s)));
    assert_eq!(first.status.code(), Some(2));
    let part = root.path().join(format!("weights/{H5}.part"));
    assert!(part.is_file(), "partial file kept: {}", text(&first));
    assert!(text(&first).contains("partial file kept"));
    let mut partial = Vec::new();
    std::fs::File::open(&part)
        .unwrap()
        .read_to_end(&mut partial)
        .unwrap();
    assert!(!partial.is_empty());
    let second = xtask(root.path(), &refs(&weights_args(&s)));
    assert!(second.status.success(), "{}", text(&second));
    assert_same_tree(
        &root.path().join("weights/mobilenet_v2_0.35_224_no_top"),
        &shared().join("weights/mobilenet_v2_0.35_224_no_top"),
    );
}

#[test]
fn plain_fetch_asks_for_keras_default_files() {
    let s = serve(HashMap::new());
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["fetch", "--root", root.path().to_str().unwrap(), "--quiet"])
        .env("MOBILENET_WEIGHTS_URL", &s.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "{}/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
            s.url
        )),
        "{t}"
    );
    assert!(t.contains("HTTP 404"), "{t}");
    assert!(
        !t.contains("partial file kept"),
        "nothing arrived, nothing kept: {t}"
    );
    assert!(!root
        .path()
        .join("weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5.part")
        .exists());
}

#[test]
fn labels_come_with_the_top_and_from_the_mirror() {
    // A mirror holding only the no-top file: --no-top --base-url asks it for nothing else.
    let mut files = HashMap::new();
    let h5 = std::fs::read(shared().join("weights/h5").join(H5)).unwrap();
    files.insert(H5.to_string(), h5.clone());
    let s = serve(files);
    let root = tempfile::tempdir().unwrap();
    let out = xtask(
        root.path(),
        &[
            "weights",
            "--alpha",
            "0.35",
            "--no-top",
            "--base-url",
            &s.url,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!root
        .path()
        .join("weights/imagenet_class_index.json")
        .exists());
    // With the top, the labels come from the same mirror (served here under the top's file name).
    let top = H5.replace("_no_top", "");
    let mut files = HashMap::new();
    files.insert(top, h5);
    files.insert(
        "imagenet_class_index.json".to_string(),
        std::fs::read(shared().join("weights/imagenet_class_index.json")).unwrap(),
    );
    let s = serve(files);
    let root = tempfile::tempdir().unwrap();
    let out = xtask(
        root.path(),
        &["weights", "--alpha", "0.35", "--top", "--base-url", &s.url],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(root.path().join("weights/imagenet_class_index.json")).unwrap(),
        std::fs::read(shared().join("weights/imagenet_class_index.json")).unwrap()
    );
}
