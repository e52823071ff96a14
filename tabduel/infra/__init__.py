"""What every part shares: settings, errors, the output store, MLflow and Prefect access, runtime resources, plots."""
