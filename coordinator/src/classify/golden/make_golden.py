#!/usr/bin/env python3
"""Golden classification metrics from scikit-learn (run by hand, not in CI).

    pip install numpy scikit-learn
    python3 coordinator/src/classify/golden/make_golden.py > coordinator/src/classify/golden/metrics.json

Imbalanced labels over 6 classes, one of them never predicted and one never present, so that
scikit-learn's zero-division convention (0) is exercised.
"""
import json
import sys

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

rng = np.random.default_rng(4)
classes = ["SDE_shapes", "acanthocytes", "cell_clusters", "keratocytes", "knizocytes", "multilobate"]
y_true = rng.choice(5, size=120, p=[0.6, 0.15, 0.12, 0.08, 0.05])  # class 5 never present
y_pred = np.where(rng.random(120) < 0.6, y_true, rng.choice(6, size=120))
y_pred[y_pred == 4] = 0  # class 4 never predicted
labels = list(range(6))
p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
out = {
    "classes": classes,
    "y_true": y_true.tolist(),
    "y_pred": y_pred.tolist(),
    "per_class": [{"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])} for i in labels],
    "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    "accuracy": float(accuracy_score(y_true, y_pred)),
    "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
}
json.dump(out, sys.stdout)
sys.stdout.write("\n")
