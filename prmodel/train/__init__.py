"""Fitting latency models: features, regressors, the saved model and its card, MLflow tracking."""
