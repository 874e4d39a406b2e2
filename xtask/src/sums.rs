//! `SHA256SUMS`: the hash of each downloaded file, recorded on first download, checked afterwards.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `file name -> hash`, in the `sha256sum` format.
pub struct Sums {
    path: std::path::PathBuf,
    map: BTreeMap<String, String>,
}

impl Sums {
    pub fn load(path: &Path) -> Result<Self> {
        let mut map = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let (hash, name) = line.split_once("  ").with_context(|| {
                    format!("{}:{}: not `<sha256>  <file>`", path.display(), i + 1)
                })?;
                map.insert(name.trim().to_string(), hash.trim().to_string());
            }
        }
        Ok(Sums {
            path: path.into(),
            map,
        })
    }

    /// Checks `file` against `pinned` or the recorded hash; records it when there is none.
    /// A mismatch deletes the file and fails naming both hashes.
    pub fn verify_or_record(&mut self, file: &Path, pinned: Option<&str>) -> Result<String> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .context("file without a name")?
            .to_string();
        let got = sha256_file(file)?;
        let want = pinned
            .map(str::to_string)
            .or_else(|| self.map.get(&name).cloned());
        if let Some(want) = want {
            if !want.eq_ignore_ascii_case(&got) {
                let _ = std::fs::remove_file(file);
                bail!(
                    "{}: sha256 mismatch: expected {want}, got {got}; the file was deleted",
                    file.display()
                );
            }
        }
        if self.map.get(&name) != Some(&got) {
            self.map.insert(name, got.clone());
            self.save()?;
        }
        Ok(got)
    }

    fn save(&self) -> Result<()> {
        let text: String = self
            .map
            .iter()
            .map(|(n, h)| format!("{h}  {n}\n"))
            .collect();
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}
