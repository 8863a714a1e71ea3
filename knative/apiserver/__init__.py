"""The API machinery, as the Kubernetes API server and knative.dev/pkg provide it.

The kinds and their CRD schemas, Knative's and KServe's admission rules, names, the `Status`
errors, the SQLite store with Kubernetes' object semantics, the control API over it (and the slice
of core `v1` that generic clients expect), the REST client, and the reconciler base with its work
queue. Serving, KServe and Eventing all stand on it; it imports nothing else of knserve.
"""
