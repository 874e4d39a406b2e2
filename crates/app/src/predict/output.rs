//! Where `predict` writes: human lines, CSV or JSON Lines, to standard output or to a file that
//! appears complete or not at all (a temporary file beside it, renamed at the end).

use crate::cli::PredictFormat;
use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One class of an image's top K.
#[derive(Clone, Debug, Serialize)]
pub struct Ranked<'a> {
    pub label: &'a str,
    pub index: usize,
    pub probability: f32,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    path: String,
    top: &'a [Ranked<'a>],
}

enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File {
        tmp: tempfile::NamedTempFile,
        dest: PathBuf,
    },
}

/// A result writer in one format.
pub struct Output {
    format: PredictFormat,
    sink: Sink,
}

impl Output {
    /// `path`: the file to write (atomically), or standard output. `header`: whether a CSV gets
    /// its header line (only the first shard's does, so shards concatenate into one CSV).
    pub fn open(
        format: PredictFormat,
        path: Option<&Path>,
        top: usize,
        header: bool,
    ) -> Result<Self> {
        let sink = match path {
            None => Sink::Stdout(std::io::BufWriter::new(std::io::stdout())),
            Some(dest) => {
                let dir = match dest.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                let tmp = tempfile::Builder::new()
                    .prefix(".predict-")
                    .tempfile_in(dir)
                    .with_context(|| {
                        format!("{}: cannot create the output file", dest.display())
                    })?;
                Sink::File {
                    tmp,
                    dest: dest.to_path_buf(),
                }
            }
        };
        let mut out = Output { format, sink };
        if format == PredictFormat::Csv && header {
            let mut cols = vec!["path".to_string(), "label".into(), "probability".into()];
            for k in 2..=top {
                cols.push(format!("label_{k}"));
                cols.push(format!("probability_{k}"));
            }
            out.csv_row(&cols)?;
        }
        Ok(out)
    }

    fn writer(&mut self) -> &mut dyn Write {
        match &mut self.sink {
            Sink::Stdout(w) => w,
            Sink::File { tmp, .. } => tmp.as_file_mut(),
        }
    }

    fn csv_row(&mut self, fields: &[String]) -> Result<()> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.write_record(fields).context("formatting a CSV row")?;
        let bytes = w.into_inner().context("formatting a CSV row")?;
        self.write(&bytes)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer()
            .write_all(bytes)
            .map_err(|e| crate::pipe::classify(e, "writing the results"))
    }

    /// One image's line.
    pub fn record(&mut self, path: &Path, top: &[Ranked<'_>]) -> Result<()> {
        let shown = path.display().to_string();
        match self.format {
            PredictFormat::Human => {
                let parts: Vec<String> = top
                    .iter()
                    .map(|r| format!("{} {:.3}", r.label, r.probability))
                    .collect();
                self.write(format!("{shown}: {}\n", parts.join(", ")).as_bytes())
            }
            PredictFormat::Csv => {
                let mut fields = vec![shown];
                for r in top {
                    fields.push(r.label.to_string());
                    fields.push(r.probability.to_string());
                }
                self.csv_row(&fields)
            }
            PredictFormat::Jsonl => {
                let mut line = serde_json::to_vec(&JsonLine { path: shown, top })?;
                line.push(b'\n');
                self.write(&line)
            }
        }
    }

    /// Flushes standard output, or moves the finished file into place.
    pub fn finish(self) -> Result<()> {
        match self.sink {
            Sink::Stdout(mut w) => w
                .flush()
                .map_err(|e| crate::pipe::classify(e, "writing the results")),
            Sink::File { tmp, dest } => {
                tmp.as_file()
                    .sync_all()
                    .with_context(|| format!("{}: writing", dest.display()))?;
                tmp.persist(&dest).map_err(|e| e.error).with_context(|| {
                    format!("{}: cannot move the results into place", dest.display())
                })?;
                Ok(())
            }
        }
    }
}
