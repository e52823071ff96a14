"""Benchmarks over a suite of datasets: cells (dataset x family x outer seed), their statistics and report."""
