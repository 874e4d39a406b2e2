//! HTTP downloads into `<file>.part`, resumed with `Range` after a cut connection or an interrupted
//! run, renamed into place only once complete.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const ATTEMPTS: usize = 5;

pub struct Request<'a> {
    pub url: &'a str,
    pub dest: &'a Path,
    /// Known size, checked at the end.
    pub size: Option<u64>,
    /// `Authorization` header value.
    pub auth: Option<String>,
    pub quiet: bool,
}

pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

/// Downloads `req.url` to `req.dest`. A `.part` left by an earlier run is continued.
pub fn download(req: &Request) -> Result<()> {
    let part = part_path(req.dest);
    if let Some(dir) = req.dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bar = ProgressBar::new(req.size.unwrap_or(0));
    if req.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_message(
        req.dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let mut attempt = 0;
    loop {
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if req.size.is_some_and(|s| have == s) {
            break;
        }
        match fetch_range(req, &part, have, &bar) {
            Ok(()) => break,
            Err(e) => {
                attempt += 1;
                if attempt >= ATTEMPTS {
                    bar.abandon();
                    let kept = if std::fs::metadata(&part).is_ok_and(|m| m.len() > 0) {
                        format!(
                            " (partial file kept at {} for the next run)",
                            part.display()
                        )
                    } else {
                        let _ = std::fs::remove_file(&part);
                        String::new()
                    };
                    return Err(e.context(format!("downloading {}{kept}", req.url)));
                }
                if !req.quiet {
                    bar.println(format!(
                        "{}: attempt {attempt} failed: {e:#}; resuming",
                        req.url
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(200 * attempt as u64));
            }
        }
    }
    bar.finish_and_clear();
    let got = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if let Some(size) = req.size {
        if got != size {
            let _ = std::fs::remove_file(&part);
            bail!(
                "{}: {got} bytes, expected {size}; the partial file was deleted",
                req.url
            );
        }
    }
    std::fs::rename(&part, req.dest)
        .with_context(|| format!("moving {} into place", part.display()))?;
    Ok(())
}

/// One request from byte `from`; an error leaves what arrived in `part` for the next attempt.
fn fetch_range(req: &Request, part: &Path, from: u64, bar: &ProgressBar) -> Result<()> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(20))
        .timeout_read(std::time::Duration::from_secs(60))
        .build();
    let mut r = agent.get(req.url);
    if from > 0 {
        r = r.set("Range", &format!("bytes={from}-"));
    }
    if let Some(a) = &req.auth {
        r = r.set("Authorization", a);
    }
    let resp = match r.call() {
        Ok(resp) => resp,
        Err(ureq::Error::Status(416, _)) if from > 0 => return Ok(()),
        Err(ureq::Error::Status(code, resp)) => {
            bail!("HTTP {code} {} for {}", resp.status_text(), req.url)
        }
        Err(e) => return Err(e.into()),
    };
    let (mut file, start) = if resp.status() == 206 && from > 0 {
        (std::fs::OpenOptions::new().append(true).open(part)?, from)
    } else {
        (std::fs::File::create(part)?, 0)
    };
    let total = resp
        .header("Content-Length")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|l| l + start);
    if let Some(t) = req.size.or(total) {
        bar.set_length(t);
    }
    bar.set_position(start);
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = start;
    loop {
        let n = reader.read(&mut buf).context("connection lost")?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])?;
        got += n as u64;
        bar.set_position(got);
    }
    file.sync_all()?;
    match total {
        Some(t) if got < t => bail!("connection closed after {got} of {t} bytes"),
        _ => Ok(()),
    }
}
