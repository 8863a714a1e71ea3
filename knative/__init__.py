"""Knative Serving and KServe on one machine or a cluster.

The resource models, the InferenceService controller, the embedded local serving plane (control
API, gateway and activator, autoscaler, supervisor), the ``kube`` target and the kn-style CLI.
"""
