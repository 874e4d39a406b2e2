//! `--class-weight`: how much each class's examples count in the loss, against class imbalance.
//! `balanced` is Keras's and scikit-learn's `compute_class_weight("balanced")`:
//! `n_samples / (n_classes * count(class))`.

use anyhow::{bail, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum ClassWeight {
    Balanced,
    /// One weight per class, in class order.
    List(Vec<f32>),
    /// Named classes' weights; the others weigh 1.
    Named(Vec<(String, f32)>),
}

fn weight(s: &str, spec: &str) -> Result<f32> {
    match s.trim().parse::<f32>() {
        Ok(w) if w.is_finite() && w >= 0.0 => Ok(w),
        _ => bail!("--class-weight {spec:?}: {s:?} is not a weight (a number >= 0)"),
    }
}

impl ClassWeight {
    pub fn parse(spec: &str) -> Result<Self> {
        if spec == "balanced" {
            return Ok(ClassWeight::Balanced);
        }
        let items: Vec<&str> = spec.split(',').map(str::trim).collect();
        if items.iter().all(|i| i.contains('=')) {
            let named = items
                .iter()
                .map(|i| {
                    let (name, w) = i.split_once('=').unwrap_or((i, ""));
                    Ok((name.trim().to_owned(), weight(w, spec)?))
                })
                .collect::<Result<_>>()?;
            return Ok(ClassWeight::Named(named));
        }
        if items.iter().any(|i| i.contains('=')) {
            bail!("--class-weight {spec:?}: either NAME=W pairs or one weight per class, not both");
        }
        Ok(ClassWeight::List(
            items
                .iter()
                .map(|w| weight(w, spec))
                .collect::<Result<_>>()?,
        ))
    }

    /// The weight of each class, given the classes and the training labels.
    pub fn resolve(&self, classes: &[String], labels: &[usize]) -> Result<Vec<f32>> {
        let k = classes.len();
        match self {
            ClassWeight::Balanced => {
                let mut count = vec![0usize; k];
                for &l in labels {
                    count[l] += 1;
                }
                let n = labels.len() as f64;
                Ok(count
                    .iter()
                    .map(|&c| {
                        if c == 0 {
                            1.0
                        } else {
                            (n / (k as f64 * c as f64)) as f32
                        }
                    })
                    .collect())
            }
            ClassWeight::List(w) if w.len() == k => Ok(w.clone()),
            ClassWeight::List(w) => bail!(
                "--class-weight gives {} weights but the data has {k} classes ({})",
                w.len(),
                classes.join(", ")
            ),
            ClassWeight::Named(pairs) => {
                let mut w = vec![1.0; k];
                for (name, v) in pairs {
                    let Some(i) = classes.iter().position(|c| c == name) else {
                        bail!(
                            "--class-weight: no class {name:?}; the classes are {}",
                            classes.join(", ")
                        );
                    };
                    w[i] = *v;
                }
                Ok(w)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    #[test]
    fn balanced_is_n_over_classes_times_count() {
        // 6 a, 2 b, 1 c: 9 / (3 * count).
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 2];
        let w = ClassWeight::parse("balanced")
            .unwrap()
            .resolve(&classes(), &labels)
            .unwrap();
        assert_eq!(w, [0.5, 1.5, 3.0]);
    }

    #[test]
    fn lists_and_names_and_their_errors() {
        let c = classes();
        assert_eq!(
            ClassWeight::parse("1,2.5,0")
                .unwrap()
                .resolve(&c, &[])
                .unwrap(),
            [1.0, 2.5, 0.0]
        );
        assert_eq!(
            ClassWeight::parse("c=4").unwrap().resolve(&c, &[]).unwrap(),
            [1.0, 1.0, 4.0]
        );
        assert!(ClassWeight::parse("1,2").unwrap().resolve(&c, &[]).is_err());
        let e = ClassWeight::parse("d=2")
            .unwrap()
            .resolve(&c, &[])
            .unwrap_err();
        assert!(e.to_string().contains("no class \"d\""), "{e}");
        for bad in ["1,x", "a=1,2", "-1,1,1", "a=nan"] {
            assert!(ClassWeight::parse(bad).is_err(), "{bad}");
        }
    }
}
