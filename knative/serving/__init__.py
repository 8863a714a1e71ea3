"""Knative Serving's reconcilers (pkg/reconciler): Service → Configuration + Route → Revision."""
