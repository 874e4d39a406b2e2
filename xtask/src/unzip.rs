//! Safe extraction of the sports archive: absolute paths, `..` components and links are rejected
//! (no zip-slip); only `<split>/<class>/<file>` of the chosen classes is kept.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

pub const SPLITS: [&str; 3] = ["train", "valid", "test"];

/// Where an entry lands under the output, or `None` when it is not one we keep.
fn target(name: &Path, classes: Option<&[String]>) -> Option<PathBuf> {
    let parts: Vec<String> = name
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let split_at = parts.iter().position(|p| SPLITS.contains(&p.as_str()))?;
    let rest = &parts[split_at..];
    if rest.len() != 3 {
        return None;
    }
    if let Some(c) = classes {
        if !c.iter().any(|k| k == &rest[1]) {
            return None;
        }
    }
    Some(rest.iter().collect())
}

/// Extracts into `out` (via a temporary folder renamed at the end). Returns the number of files.
pub fn extract(zip_path: &Path, out: &Path, classes: Option<&[String]>) -> Result<usize> {
    let f = std::fs::File::open(zip_path)
        .with_context(|| format!("{}: cannot open", zip_path.display()))?;
    let mut z = zip::ZipArchive::new(f)
        .with_context(|| format!("{}: not a zip archive", zip_path.display()))?;
    // Check every entry before writing anything.
    for i in 0..z.len() {
        let e = z.by_index(i)?;
        let raw = e.name().to_string();
        if e.enclosed_name().is_none()
            || raw.starts_with('/')
            || raw.split(['/', '\\']).any(|p| p == "..")
        {
            bail!(
                "{}: unsafe entry {raw:?} (absolute or escaping path); nothing was extracted",
                zip_path.display()
            );
        }
        if e.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            bail!(
                "{}: entry {raw:?} is a symbolic link; nothing was extracted",
                zip_path.display()
            );
        }
    }
    let tmp = out.with_extension("extracting");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let mut n = 0;
    for i in 0..z.len() {
        let mut e = z.by_index(i)?;
        if e.is_dir() {
            continue;
        }
        let Some(name) = e.enclosed_name() else {
            continue;
        };
        let Some(rel) = target(&name, classes) else {
            continue;
        };
        let dest = tmp.join(rel);
        std::fs::create_dir_all(dest.parent().expect("three components"))?;
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).with_context(|| {
            format!(
                "{}: entry {} is corrupt",
                zip_path.display(),
                name.display()
            )
        })?;
        std::fs::write(&dest, buf)?;
        n += 1;
    }
    if n == 0 {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "{}: no <split>/<class>/<image> entries for the chosen classes",
            zip_path.display()
        );
    }
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// A small valid archive in the data set's layout, deflated.
    fn sample() -> Vec<u8> {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in [
            (
                "sports/train/golf/1.jpg",
                &b"golf photo bytes golf photo bytes"[..],
            ),
            ("sports/valid/golf/2.jpg", b"another photo"),
            (
                "sports/test/archery/3.jpg",
                b"and a third one, longer than the others",
            ),
        ] {
            z.start_file(name, opts).unwrap();
            z.write_all(body).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    fn extract_bytes(bytes: &[u8]) -> Result<usize> {
        let d = tempfile::tempdir().unwrap();
        let zip_path = d.path().join("case.zip");
        std::fs::write(&zip_path, bytes).unwrap();
        extract(&zip_path, &d.path().join("out"), None)
    }

    #[test]
    fn the_sample_extracts() {
        assert_eq!(extract_bytes(&sample()).unwrap(), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Never a panic: cut short, bytes overwritten, or random bytes; extracted or refused.
        #[test]
        fn damaged_or_random_archives_never_panic(
            cut in 0.0f64..=1.0,
            flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..8),
            random in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut b = sample();
            b.truncate(((b.len() as f64 * cut) as usize).max(1));
            for (pos, v) in flips {
                let i = ((b.len() - 1) as f64 * pos) as usize;
                b[i] = v;
            }
            let _ = extract_bytes(&b);
            let _ = extract_bytes(&random);
        }
    }
}
