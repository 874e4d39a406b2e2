//! Keras's legacy HDF5 weight files -> `<layer>/<variable>.npy` trees.
//!
//! Layout: root attribute `layer_names` lists every layer (weightless ones too); each layer group has
//! an attribute `weight_names` (`Conv1/kernel:0`, ...); the datasets sit at `<layer>/<weight_name>`.

use anyhow::{bail, Context, Result};
use hdf5_pure::{AttrValue, File};
use std::path::Path;

fn strings(v: Option<&AttrValue>) -> Vec<String> {
    match v {
        Some(
            AttrValue::StringArray(s)
            | AttrValue::AsciiStringArray(s)
            | AttrValue::VarLenStringArray(s)
            | AttrValue::VarLenAsciiStringArray(s),
        ) => s.clone(),
        Some(
            AttrValue::String(s)
            | AttrValue::AsciiString(s)
            | AttrValue::VarLenString(s)
            | AttrValue::VarLenAsciiString(s),
        ) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Converts `h5` into `out` (written to a temporary folder, then renamed). Returns the number of arrays.
pub fn convert(h5: &Path, out: &Path) -> Result<usize> {
    let file = File::open(h5)
        .map_err(|e| anyhow::anyhow!("{}: not a readable HDF5 file: {e}", h5.display()))?;
    let root = file
        .root()
        .attrs()
        .map_err(|e| anyhow::anyhow!("{}: {e}", h5.display()))?;
    let layers = strings(root.get("layer_names"));
    if layers.is_empty() {
        bail!(
            "{}: no `layer_names` attribute: not a Keras weights file",
            h5.display()
        );
    }
    let tmp = out.with_extension("converting");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let mut count = 0;
    for layer in &layers {
        let g = file
            .group(layer)
            .map_err(|e| anyhow::anyhow!("{}: layer {layer}: {e}", h5.display()))?;
        let names = strings(
            g.attrs()
                .map_err(|e| anyhow::anyhow!("{}: layer {layer}: {e}", h5.display()))?
                .get("weight_names"),
        );
        for wn in names {
            let ds = file
                .dataset(&format!("{layer}/{wn}"))
                .map_err(|e| anyhow::anyhow!("{}: {layer}/{wn}: {e}", h5.display()))?;
            let shape: Vec<usize> = ds
                .shape()
                .map_err(|e| anyhow::anyhow!("{}: {layer}/{wn}: {e}", h5.display()))?
                .iter()
                .map(|&d| d as usize)
                .collect();
            let values = ds
                .read_f32()
                .map_err(|e| anyhow::anyhow!("{}: {layer}/{wn}: {e}", h5.display()))?;
            let arr = ndarray::ArrayD::from_shape_vec(shape, values)
                .with_context(|| format!("{layer}/{wn}: data does not fill its shape"))?;
            let var = wn.rsplit('/').next().unwrap_or(&wn).trim_end_matches(":0");
            let dir = tmp.join(layer);
            std::fs::create_dir_all(&dir)?;
            ndarray_npy::write_npy(dir.join(format!("{var}.npy")), &arr)
                .with_context(|| format!("writing {layer}/{var}.npy"))?;
            count += 1;
        }
    }
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(count)
}
