"""The `kube` target: the same objects on a real cluster, and the kopf InferenceService operator."""
