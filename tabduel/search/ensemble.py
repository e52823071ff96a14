"""Post-hoc ensembles of a search's trials (Caruana et al. 2004, "Ensemble selection from libraries of models"): a
greedy forward selection, with replacement, of the trials whose average prediction on the valid split has the lowest
MSE. It trains nothing: it reuses the fitted trials and their valid predictions.

Hand-written (a dozen lines of numpy): the libraries that ship it (AutoGluon's EnsembleSelection, TabRepo) would
bring a whole AutoML framework for one loop.
"""

from __future__ import annotations

import numpy as np

ITERATIONS = 40  # TabArena's and AutoGluon's choice


def caruana_weights(valid: np.ndarray, y: np.ndarray, iterations: int = ITERATIONS) -> np.ndarray:
    """(members, rows) valid predictions and (rows,) targets -> (members,) weights summing to 1: each of `iterations`
    steps adds the member (again, if it helps most) whose inclusion gives the lowest valid MSE of the running mean
    (ties: the lower index, the library's order); the weights are those of the step with the lowest valid MSE, as
    Caruana et al. return the best of the nested ensembles, so the ensemble is never worse on valid than its best
    member."""
    valid = np.asarray(valid, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if valid.ndim != 2 or valid.shape[1] != y.shape[0] or valid.shape[0] == 0:
        raise ValueError(f"valid predictions of shape {valid.shape} do not match {y.shape[0]} targets")
    counts = np.zeros(valid.shape[0], dtype=np.int64)
    total = np.zeros_like(y)
    best_error, best_counts = np.inf, counts.copy()
    for step in range(1, iterations + 1):
        errors = (((total + valid) / step - y) ** 2).mean(axis=1)  # (members,): the MSE with each one added
        pick = int(np.argmin(errors))
        counts[pick] += 1
        total += valid[pick]
        if errors[pick] < best_error:
            best_error, best_counts = float(errors[pick]), counts.copy()
    return best_counts / best_counts.sum()


def mix(predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(members, rows) predictions and (members,) weights -> (rows,) their weighted mean."""
    return np.asarray(weights, dtype=np.float64) @ np.asarray(predictions, dtype=np.float64)
