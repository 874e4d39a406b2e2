//! Weights looked up by hierarchical Keras name (`block_3_expand_BN/gamma`), with shape checks.
//!
//! A [`VarStore`] reads a `<layer>/<variable>.npy` tree or an `.npz` with the same keys. Every `get`
//! is recorded; [`VarStore::finish`] reports *all* missing, mis-shaped, unreadable and unused names at
//! once, so a user fixes a bad weights folder in one go.

use crate::{Error, Result, Tensor};
use ndarray_npy::{NpzReader, ReadNpyExt};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Everything wrong with a set of weights, for one error message.
#[derive(Debug, Default, thiserror::Error)]
pub struct WeightReport {
    pub location: PathBuf,
    pub missing: Vec<(String, Vec<usize>)>,
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    pub unexpected: Vec<(String, Vec<usize>)>,
}

impl WeightReport {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.misshaped.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for WeightReport {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "weights in {} do not fit the model",
            self.location.display()
        )?;
        for (n, s) in &self.missing {
            write!(f, "\n  missing: {n} (expected shape {s:?})")?;
        }
        for (n, want, got) in &self.misshaped {
            write!(f, "\n  wrong shape: {n}: expected {want:?}, found {got:?}")?;
        }
        for (n, s) in &self.unexpected {
            write!(f, "\n  unexpected: {n} {s:?}")?;
        }
        Ok(())
    }
}

/// Named tensors and the record of which ones the model asked for.
pub struct VarStore {
    source: PathBuf,
    tensors: BTreeMap<String, Tensor>,
    asked: RefCell<BTreeSet<String>>,
    report: RefCell<WeightReport>,
}

impl VarStore {
    pub fn from_map(source: impl Into<PathBuf>, tensors: BTreeMap<String, Tensor>) -> Self {
        VarStore {
            source: source.into(),
            tensors,
            asked: Default::default(),
            report: Default::default(),
        }
    }

    /// Opens a directory tree of `.npy` files or an `.npz` file.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Self::from_dir(path)
        } else if path.is_file() {
            Ok(Self::from_map(path, read_npz(path)?))
        } else {
            Err(Error::file(path, "no such weights directory or .npz file"))
        }
    }

    /// Reads `<root>/<layer>/<variable>.npy` as `layer/variable` (f32, C order).
    pub fn from_dir(root: &Path) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        let layers = std::fs::read_dir(root).map_err(|e| Error::Io {
            path: root.into(),
            source: e,
        })?;
        for layer in layers {
            let layer = layer
                .map_err(|e| Error::Io {
                    path: root.into(),
                    source: e,
                })?
                .path();
            if !layer.is_dir() {
                continue;
            }
            let entries = std::fs::read_dir(&layer).map_err(|e| Error::Io {
                path: layer.clone(),
                source: e,
            })?;
            for e in entries {
                let p = e
                    .map_err(|e| Error::Io {
                        path: layer.clone(),
                        source: e,
                    })?
                    .path();
                if p.extension().and_then(|s| s.to_str()) != Some("npy") {
                    continue;
                }
                let name = format!("{}/{}", file_stem(&layer), file_stem(&p));
                tensors.insert(name, read_npy(&p)?);
            }
        }
        if tensors.is_empty() {
            return Err(Error::file(
                root,
                "holds no <layer>/<variable>.npy weight files",
            ));
        }
        check_finite(root, &tensors)?;
        Ok(Self::from_map(root, tensors))
    }

    pub fn source(&self) -> &Path {
        &self.source
    }
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape())
    }
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// The tensor `name` with the expected shape; a missing or mis-shaped one is recorded and zeros
    /// returned, so that loading goes on and [`finish`](Self::finish) can list every problem.
    pub fn get(&self, name: &str, shape: &[usize]) -> Tensor {
        self.asked.borrow_mut().insert(name.to_string());
        match self.tensors.get(name) {
            Some(t) if t.shape() == shape => t.clone(),
            Some(t) => {
                self.report.borrow_mut().misshaped.push((
                    name.into(),
                    shape.to_vec(),
                    t.shape().to_vec(),
                ));
                Tensor::zeros(shape.to_vec())
            }
            None => {
                self.report
                    .borrow_mut()
                    .missing
                    .push((name.into(), shape.to_vec()));
                Tensor::zeros(shape.to_vec())
            }
        }
    }

    /// Marks names as known without loading them (a top that is deliberately ignored).
    pub fn ignore(&self, prefix: &str) {
        let mut asked = self.asked.borrow_mut();
        for n in self.tensors.keys().filter(|n| n.starts_with(prefix)) {
            asked.insert(n.clone());
        }
    }

    /// Fails with every problem seen; `allow_unused` accepts names nobody asked for.
    pub fn finish(self, allow_unused: bool) -> std::result::Result<(), WeightReport> {
        let mut report = self.report.into_inner();
        report.location = self.source;
        if !allow_unused {
            let asked = self.asked.into_inner();
            report.unexpected = self
                .tensors
                .iter()
                .filter(|(n, _)| !asked.contains(*n))
                .map(|(n, t)| (n.clone(), t.shape().to_vec()))
                .collect();
        }
        if report.is_empty() {
            Ok(())
        } else {
            Err(report)
        }
    }
}

fn file_stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads one f32 `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let f = File::open(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    Tensor::read_npy(std::io::BufReader::new(f))
        .map_err(|e| Error::file(path, format!("not a float32 .npy array: {e}")))
}

/// Reads every f32 array of an `.npz` file.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let f = File::open(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let mut z = NpzReader::new(std::io::BufReader::new(f))
        .map_err(|e| Error::file(path, format!("not an .npz archive: {e}")))?;
    let names = z.names().map_err(|e| Error::file(path, e))?;
    let mut out = BTreeMap::new();
    for n in names {
        let t: Tensor = z
            .by_name(&n)
            .map_err(|e| Error::file(path, format!("array {n}: {e}")))?;
        out.insert(n, t);
    }
    check_finite(path, &out)?;
    Ok(out)
}

/// Refuses tensors holding NaN or infinity, naming each with its counts: a NaN weight does not
/// fail loudly later (ReLU6 turns it into 0), it silently makes every prediction the same.
pub fn check_finite(source: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let bad: Vec<String> = tensors
        .iter()
        .filter_map(|(name, t)| {
            let nan = t.iter().filter(|v| v.is_nan()).count();
            let inf = t.iter().filter(|v| v.is_infinite()).count();
            let parts: Vec<String> = [(nan, "NaN"), (inf, "infinite")]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            (!parts.is_empty()).then(|| format!("{name}: {}", parts.join(", ")))
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::file(
        source,
        format!("non-finite values, refusing to load: {}", bad.join("; ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_tensors_are_refused_by_name_and_count() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("w.npz");
        let mut bad = Tensor::zeros(vec![4, 5]);
        bad[[0, 1]] = f32::NAN;
        bad[[2, 2]] = f32::NAN;
        bad[[3, 4]] = f32::INFINITY;
        let tensors = vec![
            ("Conv_1/kernel".to_string(), bad),
            ("ok/bias".to_string(), Tensor::zeros(vec![3])),
        ];
        crate::checkpoint::save_npz(&path, &tensors).unwrap();
        let err = VarStore::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("Conv_1/kernel: 2 NaN, 1 infinite") && !err.contains("ok/bias"),
            "{err}"
        );
        let err = crate::checkpoint::load_npz(&path).unwrap_err().to_string();
        assert!(err.contains("Conv_1/kernel: 2 NaN"), "{err}");
        let dir = d.path().join("weights/Conv_1");
        std::fs::create_dir_all(&dir).unwrap();
        let mut nan = ndarray::ArrayD::<f32>::zeros(vec![2, 2]);
        nan[[1, 1]] = f32::NAN;
        ndarray_npy::write_npy(dir.join("kernel.npy"), &nan).unwrap();
        let err = VarStore::open(&d.path().join("weights"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("Conv_1/kernel: 1 NaN"), "{err}");
    }

    #[test]
    fn report_lists_every_problem() {
        let mut m = BTreeMap::new();
        m.insert("a/kernel".to_string(), Tensor::zeros(vec![2, 3]));
        m.insert("b/gamma".to_string(), Tensor::zeros(vec![4]));
        m.insert("z/extra".to_string(), Tensor::zeros(vec![1]));
        let vs = VarStore::from_map("w", m);
        vs.get("a/kernel", &[3, 2]);
        vs.get("b/gamma", &[4]);
        vs.get("c/beta", &[5]);
        let err = vs.finish(false).unwrap_err().to_string();
        assert_eq!(
            err,
            "weights in w do not fit the model\n  missing: c/beta (expected shape [5])\n  wrong shape: a/kernel: expected [3, 2], found [2, 3]\n  unexpected: z/extra [1]"
        );
    }
}
