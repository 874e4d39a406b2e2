//! Checkpoints: every variable (weights, moving statistics) and the optimizer state in one `.npz`
//! with Keras-style names, readable by `numpy.load`. Written atomically: temporary file, fsync, rename.

use crate::vars::{read_npz, WeightReport};
use crate::{Error, Graph, Result, Tensor};
use ndarray_npy::NpzWriter;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Writes `path` so that it is either the old file or the complete new one, never half of one.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let io = |e| Error::Io {
        path: tmp.clone(),
        source: e,
    };
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        write(&mut f)?;
        f.flush().map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (text files: configuration, history, reports).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |f| {
        f.write_all(bytes).map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })
    })
}

/// Saves named tensors as an `.npz`, atomically.
pub fn save_npz(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_atomic(path, |f| {
        let mut z = NpzWriter::new(f);
        for (name, t) in tensors {
            let std = t.as_standard_layout();
            z.add_array(name.as_str(), &std)
                .map_err(|e| Error::file(path, format!("writing {name}: {e}")))?;
        }
        z.finish().map_err(|e| Error::file(path, e))?;
        Ok(())
    })
}

/// Every variable of the graph, by name.
pub fn graph_tensors(g: &mut Graph) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    g.visit_params(&mut |p| out.push((p.name.clone(), p.value.clone())));
    out
}

/// Loads an `.npz` into a map.
pub fn load_npz(path: &Path) -> Result<HashMap<String, Tensor>> {
    Ok(read_npz(path)?.into_iter().collect())
}

/// Copies values from `tensors` into the graph's variables. Fails listing every missing, mis-shaped
/// and (unless prefixed by one of `extra_prefixes`, such as `optimizer/`) unexpected name.
pub fn restore(
    g: &mut Graph,
    tensors: &HashMap<String, Tensor>,
    source: &Path,
    extra_prefixes: &[&str],
) -> Result<()> {
    let mut report = WeightReport {
        location: source.into(),
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    g.visit_params(&mut |p| {
        seen.insert(p.name.clone());
        match tensors.get(&p.name) {
            Some(t) if t.shape() == p.value.shape() => {}
            Some(t) => report.misshaped.push((
                p.name.clone(),
                p.value.shape().to_vec(),
                t.shape().to_vec(),
            )),
            None => report
                .missing
                .push((p.name.clone(), p.value.shape().to_vec())),
        }
    });
    let mut unexpected: Vec<_> = tensors
        .iter()
        .filter(|(n, _)| !seen.contains(*n) && !extra_prefixes.iter().any(|p| n.starts_with(p)))
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    unexpected.sort();
    report.unexpected = unexpected;
    if !report.is_empty() {
        return Err(report.into());
    }
    g.visit_params(&mut |p| p.value.assign(&tensors[&p.name]));
    Ok(())
}
