"""Knative Serving and KServe on one machine or a cluster, one sub-package per mechanism.

Each room is named as Knative's or KServe's own repositories name the mechanism, and imports only
the rooms below it (checked by import-linter in `make check`):

    cli/, plane.py, operator.py   the composition roots: the kn-style CLI, `knserve up`, the operator's entry point
    kube/                         the `kube` target: the Kubernetes client and the kopf operator
    serving/, kserve/             the Serving reconciler; InferenceService translation, status, runtimes
    autoscaler/                   the KPA and HPA deciders and the multiscaler that acts on their answers
    activator/, supervisor/       the data plane (gateway, throttler, traffic); replicas as processes
    apiserver/                    kinds, validation, the store, the control API, the client, the reconciler base
"""
