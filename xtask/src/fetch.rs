//! What `fetch` does: the weights (download, verify, convert) and the data (download, extract).

use crate::download::{download, Request};
use crate::sums::Sums;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

/// Keras's own base URL (`keras.applications.mobilenet_v2`).
pub const KERAS_BASE: &str =
    "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/";
pub const CLASS_INDEX_URL: &str =
    "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json";
pub const KAGGLE_URL: &str =
    "https://www.kaggle.com/api/v1/datasets/download/gpiosenka/sports-classification";
pub const STUDY_CLASSES: [&str; 15] = [
    "archery",
    "baseball",
    "basketball",
    "bmx",
    "bowling",
    "boxing",
    "cheerleading",
    "football",
    "golf",
    "hockey",
    "rugby",
    "swimming",
    "tennis",
    "volleyball",
    "weightlifting",
];

#[derive(Args, Debug, Clone)]
pub struct WeightsArgs {
    /// Width multipliers (repeatable).
    #[arg(long, default_values = ["1.0"])]
    pub alpha: Vec<String>,
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Only the variant with the ImageNet top.
    #[arg(long, conflicts_with = "no_top")]
    pub top: bool,
    /// Only the variant without the top.
    #[arg(long)]
    pub no_top: bool,
    /// Mirror of Keras's folder (or env MOBILENET_WEIGHTS_URL).
    #[arg(long, env = "MOBILENET_WEIGHTS_URL")]
    pub base_url: Option<String>,
    /// Use this local .h5 (or folder of them) instead of downloading.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Expected sha256 of the file (one variant).
    #[arg(long)]
    pub sha256: Option<String>,
    /// URL of imagenet_class_index.json (or env IMAGENET_CLASS_INDEX_URL) [default: beside the
    /// weights on the --base-url mirror, else Keras's]. Only fetched with the top.
    #[arg(long, env = "IMAGENET_CLASS_INDEX_URL")]
    pub class_index_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Classes to keep (comma-separated); default: the study's 15.
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Keep all 100 classes.
    #[arg(long, conflicts_with = "classes")]
    pub all: bool,
    /// Archive URL (or env SPORTS_DATA_URL); default: Kaggle's download endpoint.
    #[arg(long, env = "SPORTS_DATA_URL")]
    pub url: Option<String>,
    /// Use this local archive instead of downloading.
    #[arg(long)]
    pub from: Option<PathBuf>,
}

/// Published file sizes, checked after download.
fn known_size(file: &str) -> Option<u64> {
    match file {
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" => Some(9_406_464),
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5" => Some(14_536_120),
        _ => None,
    }
}

pub fn weights(root: &Path, a: &WeightsArgs, quiet: bool) -> Result<()> {
    let dir = root.join("weights");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut sums = Sums::load(&dir.join("SHA256SUMS"))?;
    let tops: Vec<bool> = if a.top {
        vec![true]
    } else if a.no_top {
        vec![false]
    } else {
        vec![true, false]
    };
    if a.sha256.is_some() && a.alpha.len() * tops.len() != 1 {
        bail!("--sha256 pins one file: name one --alpha and --top or --no-top");
    }
    let alphas = if a.alpha.is_empty() {
        vec!["1.0".to_string()]
    } else {
        a.alpha.clone()
    };
    for alpha in &alphas {
        for &top in &tops {
            let suffix = if top { "" } else { "_no_top" };
            let file = format!(
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{}{suffix}.h5",
                a.size
            );
            let out = dir.join(format!("mobilenet_v2_{alpha}_{}{suffix}", a.size));
            let h5 = dir.join(&file);
            if out.is_dir() && h5.is_file() {
                sums.verify_or_record(&h5, a.sha256.as_deref())?;
                println!(
                    "weights: {} already in place (sha256 checked)",
                    out.display()
                );
                continue;
            }
            if let Some(from) = &a.from {
                let src = if from.is_dir() {
                    from.join(&file)
                } else {
                    from.clone()
                };
                std::fs::copy(&src, &h5).with_context(|| format!("copying {}", src.display()))?;
            } else if !h5.is_file() {
                let base = a.base_url.as_deref().unwrap_or(KERAS_BASE);
                let url = format!("{}/{file}", base.trim_end_matches('/'));
                download(&Request {
                    url: &url,
                    dest: &h5,
                    size: known_size(&file),
                    auth: None,
                    quiet,
                })?;
            }
            let hash = sums.verify_or_record(&h5, a.sha256.as_deref())?;
            let n = crate::convert::convert(&h5, &out)?;
            println!(
                "weights: {} ({n} arrays) from {file} (sha256 {hash})",
                out.display()
            );
        }
    }
    // The ImageNet labels belong to the top: a no-top model needs none.
    if tops.contains(&true) {
        class_index(&dir, a, quiet)?;
    }
    Ok(())
}

/// `imagenet_class_index.json` beside the weights: from `--class-index-url`, else from the mirror
/// given with `--base-url`, else from Keras's public location.
fn class_index(dir: &Path, a: &WeightsArgs, quiet: bool) -> Result<()> {
    let index = dir.join("imagenet_class_index.json");
    if index.is_file() {
        println!("weights: {} already in place", index.display());
    } else {
        let url = match (&a.class_index_url, &a.base_url) {
            (Some(u), _) => u.clone(),
            (None, Some(base)) => {
                format!("{}/imagenet_class_index.json", base.trim_end_matches('/'))
            }
            (None, None) => CLASS_INDEX_URL.to_string(),
        };
        download(&Request {
            url: &url,
            dest: &index,
            size: None,
            auth: None,
            quiet,
        })?;
        let text = std::fs::read_to_string(&index)?;
        if serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| v.as_object().map(|o| o.len()))
            .ok()
            .flatten()
            != Some(1000)
        {
            let _ = std::fs::remove_file(&index);
            bail!("{url}: not Keras's 1000-class index; the file was deleted");
        }
        println!("weights: {}", index.display());
    }
    Ok(())
}

/// `Authorization: Basic` from KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json, when present.
fn kaggle_auth() -> Option<String> {
    use base64::Engine;
    let (user, key) = match (
        std::env::var("KAGGLE_USERNAME"),
        std::env::var("KAGGLE_KEY"),
    ) {
        (Ok(u), Ok(k)) => (u, k),
        _ => {
            let home = std::env::var_os("HOME")?;
            let text =
                std::fs::read_to_string(Path::new(&home).join(".kaggle/kaggle.json")).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            (
                v["username"].as_str()?.to_string(),
                v["key"].as_str()?.to_string(),
            )
        }
    };
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{key}"))
    ))
}

pub fn data(root: &Path, a: &DataArgs, quiet: bool) -> Result<()> {
    let out = root.join("data/sports");
    if crate::unzip::SPLITS.iter().all(|s| out.join(s).is_dir()) {
        println!("data: {} already in place", out.display());
        return Ok(());
    }
    std::fs::create_dir_all(root.join("data"))?;
    let archive = match &a.from {
        Some(p) => p.clone(),
        None => {
            let dest = root.join("data/sports-classification.zip");
            if !dest.is_file() {
                let url = a.url.clone().unwrap_or_else(|| KAGGLE_URL.to_string());
                let auth = if a.url.is_none() { kaggle_auth() } else { None };
                download(&Request { url: &url, dest: &dest, size: None, auth, quiet }).context(
                    "downloading the sports data (Kaggle may ask for credentials: set KAGGLE_USERNAME and KAGGLE_KEY or ~/.kaggle/kaggle.json, or pass --from ARCHIVE)",
                )?;
            }
            dest
        }
    };
    let classes: Option<Vec<String>> = if a.all {
        None
    } else if a.classes.is_empty() {
        Some(STUDY_CLASSES.iter().map(|s| s.to_string()).collect())
    } else {
        Some(a.classes.clone())
    };
    let n = crate::unzip::extract(&archive, &out, classes.as_deref())?;
    println!(
        "data: {} ({n} images) from {}",
        out.display(),
        archive.display()
    );
    Ok(())
}
