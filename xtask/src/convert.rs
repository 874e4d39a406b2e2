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
        plain_name(h5, layer)?;
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
            plain_name(h5, var)?;
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

/// A layer or variable name becomes one folder or file name: nothing that could leave `out`.
fn plain_name(h5: &Path, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !Path::new(name).has_root();
    if !ok {
        bail!("{}: the name {name:?} cannot be a file name", h5.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/weights/h5/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5");
        std::fs::read(p).unwrap()
    }

    fn convert_bytes(bytes: &[u8]) -> Result<usize> {
        let d = tempfile::tempdir().unwrap();
        let h5 = d.path().join("case.h5");
        std::fs::write(&h5, bytes).unwrap();
        let r = convert(&h5, &d.path().join("out"));
        if let Err(e) = &r {
            assert!(
                format!("{e:#}").contains("case.h5") || format!("{e:#}").contains('/'),
                "{e:#}"
            );
        }
        r
    }

    #[test]
    fn names_that_would_leave_the_output_folder_are_refused() {
        for bad in ["..", "../x", "/etc", "a/b", "", "."] {
            assert!(plain_name(Path::new("f.h5"), bad).is_err(), "{bad:?}");
        }
        for good in ["Conv1", "block_1_expand_BN", "kernel"] {
            assert!(plain_name(Path::new("f.h5"), good).is_ok());
        }
    }

    #[test]
    fn the_real_file_converts() {
        assert!(convert_bytes(&sample()).unwrap() > 200);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

        /// Never a panic: cut short, bytes overwritten, or random bytes; converted or refused.
        #[test]
        fn damaged_or_random_files_never_panic(
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
            let _ = convert_bytes(&b);
            let _ = convert_bytes(&random);
        }
    }
}
