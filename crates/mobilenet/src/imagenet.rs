//! ImageNet labels in Keras's `imagenet_class_index.json` format and top-k decoding.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Class index -> (WordNet id, label).
pub struct ClassIndex(pub Vec<(String, String)>);

impl ClassIndex {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::File {
            path: path.into(),
            msg: e.to_string(),
        })?;
        let map: BTreeMap<String, (String, String)> =
            serde_json::from_str(&text).map_err(|e| Error::File {
                path: path.into(),
                msg: format!("not Keras's class index format: {e}"),
            })?;
        let mut v = vec![(String::new(), String::new()); map.len()];
        for (k, entry) in map {
            let i: usize = k.parse().map_err(|_| Error::File {
                path: path.into(),
                msg: format!("key {k:?} is not an index"),
            })?;
            *v.get_mut(i).ok_or_else(|| Error::File {
                path: path.into(),
                msg: format!("index {i} out of range"),
            })? = entry;
        }
        Ok(ClassIndex(v))
    }

    pub fn label(&self, i: usize) -> &str {
        self.0.get(i).map(|e| e.1.as_str()).unwrap_or("?")
    }
}

/// The `k` largest entries of `probs` as `(index, probability)`, largest first.
pub fn top_k(probs: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, probs[i])).collect()
}
