"""The data plane (Knative's pkg/activator and pkg/queue): gateway, throttler, traffic split."""
