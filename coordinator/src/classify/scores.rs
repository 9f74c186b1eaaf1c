//! Classification metrics as scikit-learn's `classification_report` and `confusion_matrix`:
//! per-class precision, recall, F1 and support, macro F1, accuracy, and the confusion matrix
//! (rows the true class, columns the predicted one). A ratio with a zero denominator is 0, as
//! scikit-learn's default `zero_division`. A golden test checks them against scikit-learn.

use serde::{Deserialize, Serialize};

/// One class's row of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// Scores of a set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub per_class: Vec<ClassMetrics>,
    /// Unweighted mean of the per-class F1 (over every class, present or not).
    pub macro_f1: f64,
    pub accuracy: f64,
    /// `confusion[true][predicted]` counts, classes in `per_class` order.
    pub confusion: Vec<Vec<usize>>,
}

/// Scores of `predicted` against `truth`, both class indices into `classes`.
pub fn evaluate(classes: &[String], truth: &[usize], predicted: &[usize]) -> Scores {
    let k = classes.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[t][p] += 1;
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let predicted_c: usize = (0..k).map(|t| confusion[t][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let (precision, recall) = (ratio(tp, predicted_c), ratio(tp, support));
            let f1 =
                if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            ClassMetrics { class: classes[c].clone(), precision, recall, f1, support }
        })
        .collect();
    let macro_f1 = if k == 0 { 0.0 } else { per_class.iter().map(|c| c.f1).sum::<f64>() / k as f64 };
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    Scores { per_class, macro_f1, accuracy: ratio(correct, truth.len()), confusion }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values from scikit-learn (`golden/make_golden.py`, run by hand).
    #[test]
    fn agrees_with_scikit_learn() {
        let golden: serde_json::Value = serde_json::from_str(include_str!("golden/metrics.json")).unwrap();
        let classes: Vec<String> = serde_json::from_value(golden["classes"].clone()).unwrap();
        let truth: Vec<usize> = serde_json::from_value(golden["y_true"].clone()).unwrap();
        let pred: Vec<usize> = serde_json::from_value(golden["y_pred"].clone()).unwrap();
        let m = evaluate(&classes, &truth, &pred);
        let close = |a: f64, b: &serde_json::Value| (a - b.as_f64().unwrap()).abs() < 1e-12;
        for (c, row) in m.per_class.iter().enumerate() {
            let want = &golden["per_class"][c];
            assert!(close(row.precision, &want["precision"]), "{}: precision {}", row.class, row.precision);
            assert!(close(row.recall, &want["recall"]), "{}: recall {}", row.class, row.recall);
            assert!(close(row.f1, &want["f1"]), "{}: f1 {}", row.class, row.f1);
            assert_eq!(row.support as u64, want["support"].as_u64().unwrap());
        }
        assert!(close(m.macro_f1, &golden["macro_f1"]), "macro F1 {}", m.macro_f1);
        assert!(close(m.accuracy, &golden["accuracy"]));
        let confusion: Vec<Vec<usize>> = serde_json::from_value(golden["confusion"].clone()).unwrap();
        assert_eq!(m.confusion, confusion);
    }
}
