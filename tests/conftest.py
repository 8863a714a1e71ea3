"""Suite-wide configuration: fixtures live in tests/support/, one plugin module per area."""

import os
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "net_fixtures",
    "model_fixtures",
    "runtime_fixtures",
    "function_fixtures",
    "plane_fixtures",
    "kubectl_fixtures",
]


@pytest.fixture(autouse=True, scope="session")
def _own_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`knserve up` merges its context into $KUBECONFIG: point that at a file of the test
    session, so no test writes the user's ~/.kube/config."""
    before = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(tmp_path_factory.mktemp("kube") / "config")
    yield
    if before is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = before
