"""Knative's pkg/autoscaler: the KPA decider, the multiscaler that feeds and acts on it, metrics."""
