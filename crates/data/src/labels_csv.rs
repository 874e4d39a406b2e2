//! A data set listed in a CSV file instead of class folders: a header with `path` and `label`
//! (and optionally `split`: train, valid or test), one image a row, paths relative to the CSV's
//! folder. Each split becomes an [`ImageFolder`]; classes are the training labels, sorted.

use crate::folder::ImageFolder;
use crate::{DataError, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The splits a CSV lists (`train` always; `valid` and `test` when its `split` column has them).
pub struct LabelsCsv {
    pub classes: Vec<String>,
    pub train: ImageFolder,
    pub valid: Option<ImageFolder>,
    pub test: Option<ImageFolder>,
}

struct Row {
    line: u64,
    path: PathBuf,
    label: String,
    split: String,
}

fn err(csv: &Path, line: u64, msg: String) -> DataError {
    DataError::Config(format!("{}:{line}: {msg}", csv.display()))
}

fn rows(csv: &Path) -> Result<Vec<Row>> {
    let io = |e: std::io::Error| DataError::Io {
        path: csv.into(),
        source: e,
    };
    let file = std::fs::File::open(csv).map_err(io)?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| err(csv, 1, format!("unreadable header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(p), Some(l)) = (col("path"), col("label")) else {
        return Err(err(csv, 1, format!("the header must name `path` and `label` columns (and optionally `split`), got {:?}", headers.iter().collect::<Vec<_>>())));
    };
    let s = col("split");
    let base = csv.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            err(csv, line, format!("unreadable row: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("").to_owned();
        let (path, label) = (field(p), field(l));
        if path.is_empty() || label.is_empty() {
            return Err(err(csv, line, "a row needs both a path and a label".into()));
        }
        let split = s.map_or_else(|| "train".to_owned(), |i| field(i).to_ascii_lowercase());
        if !matches!(split.as_str(), "train" | "valid" | "test") {
            return Err(err(
                csv,
                line,
                format!("split {split:?}: use train, valid or test"),
            ));
        }
        out.push(Row {
            line,
            path: base.join(&path),
            label,
            split,
        });
    }
    Ok(out)
}

/// Reads and checks the CSV: every file exists, no path is listed twice, and every label of the
/// valid and test rows has training images.
pub fn read(csv: &Path) -> Result<LabelsCsv> {
    let rows = rows(csv)?;
    let mut seen: HashMap<PathBuf, u64> = HashMap::new();
    for r in &rows {
        if !r.path.is_file() {
            return Err(err(
                csv,
                r.line,
                format!("{}: no such file", r.path.display()),
            ));
        }
        if let Some(first) = seen.insert(r.path.clone(), r.line) {
            return Err(err(
                csv,
                r.line,
                format!("{} is already listed on line {first}", r.path.display()),
            ));
        }
    }
    let classes: Vec<String> = rows
        .iter()
        .filter(|r| r.split == "train")
        .map(|r| r.label.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.is_empty() {
        return Err(err(csv, 1, "no training rows".into()));
    }
    let folder = |split: &str| -> Result<Option<ImageFolder>> {
        let mut items = Vec::new();
        for r in rows.iter().filter(|r| r.split == split) {
            let Ok(label) = classes.binary_search(&r.label) else {
                return Err(err(
                    csv,
                    r.line,
                    format!(
                        "label {:?} has no training images (the training labels are {})",
                        r.label,
                        classes.join(", ")
                    ),
                ));
            };
            items.push((r.path.clone(), label));
        }
        Ok((!items.is_empty()).then(|| ImageFolder {
            root: csv.to_path_buf(),
            classes: classes.clone(),
            items,
            skipped: Vec::new(),
        }))
    };
    let train = folder("train")?.ok_or_else(|| err(csv, 1, "no training rows".into()))?;
    Ok(LabelsCsv {
        valid: folder("valid")?,
        test: folder("test")?,
        classes,
        train,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        for f in ["a.jpg", "b.jpg", "c.jpg", "sub/d.jpg"] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let csv = dir.join("labels.csv");
        std::fs::write(&csv, text).unwrap();
        csv
    }

    #[test]
    fn splits_classes_and_relative_paths() {
        let d = tempfile::tempdir().unwrap();
        let csv = write(d.path(), "path,label,split\na.jpg,dog,train\nb.jpg,cat,train\nsub/d.jpg,dog,valid\nc.jpg,cat,test\n");
        let l = read(&csv).unwrap();
        assert_eq!(l.classes, ["cat", "dog"]);
        assert_eq!(
            l.train.items,
            [(d.path().join("a.jpg"), 1), (d.path().join("b.jpg"), 0)]
        );
        assert_eq!(l.valid.unwrap().items, [(d.path().join("sub/d.jpg"), 1)]);
        assert_eq!(l.test.unwrap().items.len(), 1);
        let l = read(&write(d.path(), "label,path\ndog,a.jpg\n")).unwrap();
        assert!(
            l.valid.is_none() && l.train.items.len() == 1,
            "no split column: all train"
        );
    }

    #[test]
    fn clear_errors_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        for (text, says) in [
            ("path,label\na.jpg,dog\nnope.jpg,cat\n", ":3: "),
            (
                "path,label\na.jpg,dog\n./a.jpg,cat\n",
                "already listed on line 2",
            ),
            (
                "path,label,split\na.jpg,dog,train\nb.jpg,cow,valid\n",
                "label \"cow\" has no training images",
            ),
            (
                "path,label,split\na.jpg,dog,training\n",
                "use train, valid or test",
            ),
            ("file,class\na.jpg,dog\n", "must name `path` and `label`"),
            ("path,label\na.jpg,\n", "needs both a path and a label"),
        ] {
            let e = read(&write(d.path(), text)).err().unwrap().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
