//! What `predict` classifies: files and folders from the command line and `--list`, in the order
//! given, each folder walked recursively in sorted order with hidden entries left out; then the
//! part of that list that `--shard K/N` selects.

use anyhow::{bail, Context, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// `--shard K/N`: part `k` (1-based) of `n` contiguous parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl Shard {
    pub fn parse(s: &str) -> Result<Self> {
        let parse = |t: &str| t.trim().parse::<usize>().ok();
        let (k, n) = s
            .split_once('/')
            .and_then(|(k, n)| Some((parse(k)?, parse(n)?)))
            .with_context(|| format!("--shard takes K/N (part K of N, e.g. 1/4), got {s:?}"))?;
        if n == 0 || k == 0 || k > n {
            bail!("--shard {s}: K must be between 1 and N (parts are numbered from 1)");
        }
        Ok(Shard { k, n })
    }

    /// The index range of this part in a list of `len` items: `[(k-1)*len/n, k*len/n)`.
    pub fn range(self, len: usize) -> std::ops::Range<usize> {
        (self.k - 1) * len / self.n..self.k * len / self.n
    }

    pub fn is_first(self) -> bool {
        self.k == 1
    }
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every file under `dir` (recursively, sorted by path, hidden files and folders left out).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_hidden(e.path()));
    for e in entries {
        let e = e.with_context(|| format!("walking {}", dir.display()))?;
        if !e.file_type().is_dir() {
            out.push(e.into_path());
        }
    }
    Ok(())
}

/// The paths listed in `list` (`-`: standard input), one a line; blank lines are skipped.
fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let lines: Vec<String> = if list == Path::new("-") {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<_>>()
            .context("reading the input list from standard input")?
    } else {
        let f = std::fs::File::open(list)
            .with_context(|| format!("{}: cannot open the input list", list.display()))?;
        std::io::BufReader::new(f)
            .lines()
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("{}: cannot read the input list", list.display()))?
    };
    Ok(lines
        .into_iter()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.trim().is_empty())
        .map(PathBuf::from)
        .collect())
}

/// Expands the inputs in order: a folder becomes its files, anything else stays as given (a
/// missing or unreadable file is reported when it is read, like any other bad file).
pub fn expand(args: &[PathBuf], list: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut given = args.to_vec();
    if let Some(l) = list {
        given.extend(read_list(l)?);
    }
    let mut out = Vec::with_capacity(given.len());
    for p in given {
        if p.is_dir() {
            walk(&p, &mut out)?;
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_contiguous_and_cover_everything_once() {
        for len in [0, 1, 5, 7, 100] {
            for n in 1..=6 {
                let mut next = 0;
                for k in 1..=n {
                    let r = Shard { k, n }.range(len);
                    assert_eq!(r.start, next, "len {len}, part {k}/{n}");
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { k: 2, n: 4 });
        for bad in ["0/4", "5/4", "1/0", "1", "a/b", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folders_are_walked_sorted_without_hidden_entries() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in [
            "b/2.jpg",
            "b/1.jpg",
            "a/z.png",
            ".hidden/x.jpg",
            "a/.DS_Store",
            "c.jpg",
        ] {
            let p = r.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
        }
        let got = expand(&[r.join("c.jpg"), r.to_path_buf()], None).unwrap();
        let rel: Vec<String> = got
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().display().to_string())
            .collect();
        assert_eq!(rel, ["c.jpg", "a/z.png", "b/1.jpg", "b/2.jpg", "c.jpg"]);
    }
}
