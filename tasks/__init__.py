"""Prefect tasks: thin wrappers that do a step's I/O and return a StepResult (paths, not frames)."""
