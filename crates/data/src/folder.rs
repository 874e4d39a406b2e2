//! `root/<split>/<class>/<image>`: classes sorted alphanumerically (Keras's order, which fixes the
//! label indices), files sorted, hidden and non-image files skipped and counted.

use crate::{DataError, Result};
use std::path::{Path, PathBuf};

/// Extensions the decoder handles (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif"];

/// A file left out, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// The files of one split, with their labels.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub items: Vec<(PathBuf, usize)>,
    pub skipped: Vec<Skipped>,
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingFolder { path: dir.into() },
        _ => DataError::Io {
            path: dir.into(),
            source: e,
        },
    })?;
    let mut v = Vec::new();
    for e in rd {
        v.push(
            e.map_err(|e| DataError::Io {
                path: dir.into(),
                source: e,
            })?
            .path(),
        );
    }
    v.sort();
    Ok(v)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

impl ImageFolder {
    /// Reads `dir` (one split). With `expected_classes` (train's), a different class set is an error.
    pub fn open(dir: &Path, expected_classes: Option<&[String]>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(DataError::MissingFolder { path: dir.into() });
        }
        let mut classes = Vec::new();
        let mut skipped = Vec::new();
        for p in sorted_entries(dir)? {
            if is_hidden(&p) {
                continue;
            }
            if p.is_dir() {
                classes.push(
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            } else {
                skipped.push(Skipped {
                    path: p,
                    reason: "not a class folder".into(),
                });
            }
        }
        if classes.is_empty() {
            return Err(DataError::NoClasses { path: dir.into() });
        }
        if let Some(want) = expected_classes {
            let missing: Vec<String> = want
                .iter()
                .filter(|c| !classes.contains(c))
                .cloned()
                .collect();
            let extra: Vec<String> = classes
                .iter()
                .filter(|c| !want.contains(c))
                .cloned()
                .collect();
            if !missing.is_empty() || !extra.is_empty() {
                return Err(DataError::ClassMismatch {
                    path: dir.into(),
                    missing,
                    extra,
                });
            }
        }
        let mut items = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let cdir = dir.join(class);
            let before = items.len();
            for p in sorted_entries(&cdir)? {
                let ext = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(|e| e.to_ascii_lowercase());
                if is_hidden(&p) {
                    skipped.push(Skipped {
                        path: p,
                        reason: "hidden file".into(),
                    });
                } else if !p.is_file()
                    || !ext
                        .as_deref()
                        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e))
                {
                    skipped.push(Skipped {
                        path: p,
                        reason: "not an image file".into(),
                    });
                } else {
                    items.push((p, label));
                }
            }
            if items.len() == before {
                return Err(DataError::EmptyClass { path: cdir });
            }
        }
        Ok(ImageFolder {
            root: dir.into(),
            classes,
            items,
            skipped,
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
