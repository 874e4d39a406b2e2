//! Classification metrics: accuracy, confusion matrix, per-class precision/recall/F1.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// How often one class was taken for another.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConfusedPair {
    pub truth: String,
    pub predicted: String,
    pub count: usize,
}

/// `m[true][pred]` counts.
#[derive(Clone, Debug, Serialize)]
pub struct Confusion {
    pub classes: Vec<String>,
    pub matrix: Vec<Vec<usize>>,
}

impl Confusion {
    pub fn new(classes: &[String], truth: &[usize], pred: &[usize]) -> Self {
        let k = classes.len();
        let mut matrix = vec![vec![0; k]; k];
        for (&t, &p) in truth.iter().zip(pred) {
            matrix[t][p] += 1;
        }
        Confusion {
            classes: classes.to_vec(),
            matrix,
        }
    }

    /// Off-diagonal cells with at least `min` images, most frequent first (ties by class order),
    /// as fastai's `most_confused`.
    pub fn most_confused(&self, min: usize) -> Vec<ConfusedPair> {
        let k = self.classes.len();
        let mut pairs: Vec<(usize, usize, usize)> = (0..k)
            .flat_map(|t| (0..k).map(move |p| (t, p)))
            .filter(|&(t, p)| t != p && self.matrix[t][p] >= min.max(1))
            .map(|(t, p)| (t, p, self.matrix[t][p]))
            .collect();
        pairs.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        pairs
            .into_iter()
            .map(|(t, p, count)| ConfusedPair {
                truth: self.classes[t].clone(),
                predicted: self.classes[p].clone(),
                count,
            })
            .collect()
    }

    pub fn correct(&self) -> usize {
        (0..self.classes.len()).map(|i| self.matrix[i][i]).sum()
    }

    pub fn total(&self) -> usize {
        self.matrix.iter().flatten().sum()
    }

    pub fn per_class(&self) -> Vec<ClassMetrics> {
        let k = self.classes.len();
        (0..k)
            .map(|i| {
                let tp = self.matrix[i][i] as f64;
                let predicted: usize = (0..k).map(|t| self.matrix[t][i]).sum();
                let support: usize = self.matrix[i].iter().sum();
                let precision = if predicted > 0 {
                    tp / predicted as f64
                } else {
                    0.0
                };
                let recall = if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                };
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    class: self.classes[i].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// The matrix as aligned text, rows = true class (`index name`), columns = predicted class by
    /// index; every count stands right under its column's index.
    pub fn to_text(&self) -> String {
        let labels: Vec<String> = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{i:>2} {c}"))
            .collect();
        let corner = "true\\pred";
        let w = labels
            .iter()
            .map(|l| l.chars().count())
            .chain([corner.len()])
            .max()
            .unwrap_or(0);
        let widest = self
            .matrix
            .iter()
            .flatten()
            .max()
            .copied()
            .unwrap_or(0)
            .max(self.classes.len());
        let cw = widest.to_string().len() + 2;
        let mut s = format!("{corner:<w$}");
        for j in 0..self.classes.len() {
            s += &format!("{j:>cw$}");
        }
        s += "\n";
        for (label, row) in labels.iter().zip(&self.matrix) {
            s += &format!("{label:<w$}");
            for v in row {
                s += &format!("{v:>cw$}");
            }
            s += "\n";
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_confused_pairs_come_first_and_the_diagonal_never() {
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let truth = [0, 0, 0, 1, 1, 2, 2, 2, 2];
        let pred = [1, 1, 0, 0, 1, 2, 0, 1, 0];
        let c = Confusion::new(&classes, &truth, &pred);
        let got: Vec<(String, String, usize)> = c
            .most_confused(1)
            .into_iter()
            .map(|p| (p.truth, p.predicted, p.count))
            .collect();
        let want = [("a", "b", 2), ("c", "a", 2), ("b", "a", 1), ("c", "b", 1)]
            .map(|(t, p, n)| (t.to_string(), p.to_string(), n));
        assert_eq!(got, want);
        assert_eq!(c.most_confused(2).len(), 2);
    }

    #[test]
    fn counts_and_scores() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let c = Confusion::new(&classes, &[0, 0, 1, 1, 1], &[0, 1, 1, 1, 0]);
        assert_eq!(c.matrix, vec![vec![1, 1], vec![1, 2]]);
        assert_eq!((c.correct(), c.total()), (3, 5));
        let m = c.per_class();
        assert!((m[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m[1].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m[0].f1 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn text_counts_stand_under_their_column_index() {
        let classes: Vec<String> = (0..15)
            .map(|i| format!("{}class{i}", "x".repeat(i % 4)))
            .collect();
        let truth: Vec<usize> = (0..15).flat_map(|i| vec![i; 120]).collect();
        let pred: Vec<usize> = truth
            .iter()
            .enumerate()
            .map(|(n, &t)| if n % 7 == 0 { (t + 3) % 15 } else { t })
            .collect();
        let c = Confusion::new(&classes, &truth, &pred);
        let text = c.to_text();
        let lines: Vec<&str> = text.lines().collect();
        // (token, byte offset where it ends) for each blank-separated token of a line.
        let tokens = |l: &str| -> Vec<(String, usize)> {
            let mut out = Vec::new();
            let mut start = None;
            for (p, ch) in l.char_indices().chain([(l.len(), ' ')]) {
                match (ch == ' ', start) {
                    (false, None) => start = Some(p),
                    (true, Some(s0)) => {
                        out.push((l[s0..p].to_string(), p));
                        start = None;
                    }
                    _ => {}
                }
            }
            out
        };
        let header = tokens(lines[0]);
        let columns = &header[header.len() - 15..];
        for (j, (t, _)) in columns.iter().enumerate() {
            assert_eq!(t, &j.to_string(), "{text}");
        }
        for (i, line) in lines[1..].iter().enumerate() {
            assert!(
                line.starts_with(&format!("{i:>2} {}", classes[i])),
                "{line}"
            );
            let row = tokens(line);
            let counts = &row[row.len() - 15..];
            for (j, ((v, end), (_, col_end))) in counts.iter().zip(columns).enumerate() {
                assert_eq!(v, &c.matrix[i][j].to_string(), "{text}");
                assert_eq!(
                    end, col_end,
                    "row {i}, column {j} is not under its index:\n{text}"
                );
            }
            assert_eq!(line.len(), lines[0].len(), "{text}");
        }
    }
}
