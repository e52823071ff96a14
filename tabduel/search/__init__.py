"""Hyperparameter search: the spaces, trials as plain functions, Optuna studies, the ask/tell loop and its report."""
