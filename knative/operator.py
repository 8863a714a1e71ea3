"""`python -m knserve.knative.operator`: the entry point the published manifests run.

knative/deploy/operator.yaml and Containerfile.operator start the operator by this name, so it
stays; the operator itself is `knserve.knative.kube.operator`.
"""

from knserve.knative.kube.operator import main

if __name__ == "__main__":
    main()
