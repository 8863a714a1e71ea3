"""Knative Eventing on the local plane: brokers, triggers, filters and durable delivery."""
