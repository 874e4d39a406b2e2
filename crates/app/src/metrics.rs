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

    /// The matrix as aligned text, rows = true class, columns = predicted (by index).
    pub fn to_text(&self) -> String {
        let w = self
            .classes
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = format!("{:>w$} ", "true\\pred");
        for j in 0..self.classes.len() {
            s += &format!("{j:>4}");
        }
        s += "\n";
        for (i, row) in self.matrix.iter().enumerate() {
            s += &format!("{:>w$} ", format!("{i:>2} {}", self.classes[i]), w = w + 3);
            for v in row {
                s += &format!("{v:>4}");
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
}
