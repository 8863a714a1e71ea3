"""`knserve up` end to end: Knative Services as processes behind the gateway, across restarts."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from plane_fixtures import LocalPlane, apply, echo_service, is_ready

from knserve.knative.apiserver.errors import ApiError
from knserve.knative.apiserver.kinds import by_name

pytestmark = pytest.mark.slow

HOST = "echo.default.localhost"
SERVICES = by_name("services")


def test_a_plain_command_serves_through_the_gateway_with_knatives_contract(
    plane: LocalPlane, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    svc = echo_service(
        spec={
            "containers": [
                {
                    **echo_service()["spec"]["template"]["spec"]["containers"][0],
                    "workingDir": str(workdir),
                }
            ]
        }
    )
    assert "services.serving.knative.dev/echo created" in apply(plane, tmp_path, svc)

    ready = plane.wait_ready("services", "echo")
    status = ready["status"]
    assert status["url"] == "http://echo.default.localhost"
    assert status["address"]["url"] == status["url"]
    assert status["latestCreatedRevisionName"] == status["latestReadyRevisionName"] == "echo-00001"
    assert status["traffic"] == [
        {"revisionName": "echo-00001", "latestRevision": True, "percent": 100}
    ]
    assert {c["type"] for c in status["conditions"]} == {
        "Ready",
        "ConfigurationsReady",
        "RoutesReady",
    }

    answer = plane.call(HOST).json()
    assert answer["revision"] == "echo-00001"
    assert answer["service"] == answer["configuration"] == "echo"
    assert answer["greeting"] == "hello"
    assert answer["argv"] == [answer["port"], "hello", "$(PORT)"]  # $(VAR) expanded, $$ escaped
    assert answer["cwd"] == str(workdir)

    revision = plane.get("revisions", "echo-00001")
    assert {c["type"]: c["status"] for c in revision["status"]["conditions"]} == {
        "Ready": "True",
        "ContainerHealthy": "True",
        "ResourcesAvailable": "True",
        "Active": "True",
    }
    route = plane.get("routes", "echo")
    assert route["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert plane.get("configurations", "echo")["status"]["latestReadyRevisionName"] == "echo-00001"

    assert plane.call("nothing.default.localhost").status_code == 404

    # the literal `python -m http.server $(PORT)` of Knative's examples
    files = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "files"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "image": "python",
                            "workingDir": str(workdir),
                            "command": [
                                sys.executable,
                                "-m",
                                "http.server",
                                "$(PORT)",
                                "--bind",
                                "127.0.0.1",
                            ],
                        }
                    ]
                }
            }
        },
    }
    (workdir / "hello.txt").write_text("hello from a revision\n")
    plane.client.create(SERVICES, files)
    plane.wait_ready("services", "files")
    assert plane.call("files.default.localhost", "/hello.txt").text == "hello from a revision\n"

    plane.knserve("delete", "-f", str(tmp_path / "objects.yaml"))
    with pytest.raises(ApiError):
        plane.get("revisions", "echo-00001")


def test_a_container_that_exits_at_start_says_so_with_its_last_log_lines(
    plane: LocalPlane, tmp_path: Path
) -> None:
    svc = echo_service(name="broken")
    svc["spec"]["template"]["spec"]["containers"][0].update(
        command=[
            sys.executable,
            "-c",
            "import sys\n"
            + "print('loading', flush=True)\n" * 100
            + "print('cannot load model.joblib', file=sys.stderr)\nsys.exit(3)",
        ],
        args=[],
    )
    apply(plane, tmp_path, svc)

    def failed(obj: dict[str, Any]) -> bool:
        return any(
            c["type"] == "Ready" and c["status"] == "False"
            for c in obj.get("status", {}).get("conditions", [])
        )

    revision = plane.wait_for("revisions", "broken-00001", failed)
    conditions = {c["type"]: c for c in revision["status"]["conditions"]}
    # Knative's words for a crashing container, with Kubernetes' termination message from the
    # log (FallbackToLogsOnError): its last 80 lines
    message = "Container failed with: " + "loading\n" * 79 + "cannot load model.joblib"
    for ctype in ("ContainerHealthy", "Ready"):
        assert (conditions[ctype]["status"], conditions[ctype]["reason"]) == ("False", "ExitCode3")
        assert conditions[ctype]["message"] == message
    service = plane.wait_for("services", "broken", failed)
    ready = next(c for c in service["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RevisionFailed"
    assert ready["message"] == f'Revision "broken-00001" failed with message: {message}.'


def test_traffic_splits_80_20_and_a_tag_reaches_its_revision_at_zero_percent(
    plane: LocalPlane, tmp_path: Path
) -> None:
    apply(plane, tmp_path, echo_service(greeting="v1"))
    plane.wait_ready("services", "echo")
    v2 = echo_service(greeting="v2")
    v2["spec"]["traffic"] = [
        {"revisionName": "echo-00001", "percent": 80},
        {"latestRevision": True, "percent": 20},
    ]
    apply(plane, tmp_path, v2)
    plane.wait_ready("services", "echo")
    assert plane.wait_for(
        "services", "echo", lambda o: o["status"].get("latestReadyRevisionName") == "echo-00002"
    )

    # revisions are immutable: a template may not reuse a revision's name for another spec
    reuse = plane.get("services", "echo")
    reuse["spec"]["template"]["metadata"] = {"name": "echo-00001"}
    with pytest.raises(ApiError) as refused:
        plane.client.replace(SERVICES, reuse)
    assert refused.value.code == 422
    assert "'echo-00001' is an existing revision with a different spec" in refused.value.message

    counts: collections.Counter[str] = collections.Counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for answer in pool.map(lambda _: plane.call(HOST).json()["greeting"], range(1000)):
            counts[answer] += 1
    assert 750 <= counts["v1"] <= 850, counts
    assert counts["v1"] + counts["v2"] == 1000

    # the new revision at 0 %, tagged: reachable by its tag URL, never otherwise
    result = plane.knserve(
        "service", "update", "echo", "--traffic", "echo-00001=100", "--tag", "echo-00002=canary"
    )
    assert result.returncode == 0, result.stderr
    svc = plane.wait_for(
        "services",
        "echo",
        lambda o: any(t.get("tag") == "canary" for t in o["status"].get("traffic", [])),
    )
    canary = next(t for t in svc["status"]["traffic"] if t.get("tag") == "canary")
    assert canary == {
        "revisionName": "echo-00002",
        "latestRevision": False,
        "percent": 0,
        "tag": "canary",
        "url": "http://canary-echo.default.localhost",
    }
    assert {plane.call(HOST).json()["greeting"] for _ in range(50)} == {"v1"}
    assert plane.call("canary-echo.default.localhost").json()["greeting"] == "v2"
    # the header routes only with config-features' tag-header-based-routing enabled (off by default)
    assert plane.call(HOST, headers={"Knative-Serving-Tag": "canary"}).json()["greeting"] == "v1"

    result = plane.knserve(
        "service", "update", "echo", "--traffic", "echo-00002=100", "--untag", "canary"
    )
    assert result.returncode == 0, result.stderr
    plane.wait_for(
        "services",
        "echo",
        lambda o: (
            o["status"].get("traffic", [{}])[0].get("revisionName") == "echo-00002"
            and len(o["status"]["traffic"]) == 1
        ),
    )
    assert {plane.call(HOST).json()["greeting"] for _ in range(20)} == {"v2"}


def test_a_killed_replica_is_replaced_and_a_restart_brings_everything_back(
    plane: LocalPlane, tmp_path: Path
) -> None:
    apply(plane, tmp_path, echo_service())
    plane.wait_ready("services", "echo")
    first = plane.call(HOST).json()["pid"]

    os.kill(first, signal.SIGKILL)
    failures = []
    pids = set()
    for _ in range(200):
        response = plane.call(HOST)
        if response.status_code != 200:
            failures.append(f"{response.status_code} {response.text}")
        else:
            pids.add(response.json()["pid"])
        if pids - {first}:
            break
    assert pids - {first}, "the killed replica was never replaced"
    assert not failures, "requests after the kill should be held until the new replica is ready"

    # stopping drains: a request in flight when SIGTERM arrives still gets its answer
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        mark = tmp_path / "arrived"
        slow = pool.submit(plane.call, HOST, f"/sleep?s=1.5&mark={mark}")
        deadline = time.monotonic() + 10
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # the replica is another process; its mark file is the signal
        plane.restart()
        assert slow.result().status_code == 200
    svc = plane.wait_ready("services", "echo")
    assert svc["status"]["latestReadyRevisionName"] == "echo-00001"
    assert plane.call(HOST).json()["revision"] == "echo-00001"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"traffic": [{"latestRevision": True, "percent": 90}]},
            "percents sum to 90, they must sum to 100",
        ),
        (
            {
                "traffic": [
                    {"latestRevision": True, "percent": 50, "tag": "a"},
                    {"latestRevision": True, "percent": 50, "tag": "a"},
                ]
            },
            "tag",
        ),
        ({"traffic": [{"latestRevision": True, "percent": 100, "tag": "Not_DNS"}]}, "Not_DNS"),
    ],
)
def test_invalid_services_are_refused_with_a_status_that_says_what_to_fix(
    plane: LocalPlane, change: dict[str, Any], message: str
) -> None:
    svc = echo_service()
    svc["spec"].update(change)
    with pytest.raises(ApiError) as refused:
        plane.client.create(SERVICES, svc)
    assert refused.value.code in (400, 422)
    assert message in refused.value.message


def test_a_name_that_is_not_a_dns_label_is_refused(plane: LocalPlane) -> None:
    with pytest.raises(ApiError) as refused:
        plane.client.create(SERVICES, echo_service(name="Echo_1"))
    assert "Echo_1" in refused.value.message
    assert refused.value.code == 422


def test_two_deployed_revisions_of_a_predictor_function_split_80_20(
    functions_home: Path, plane: LocalPlane, tmp_path: Path
) -> None:
    folder = tmp_path / "iris"
    created = plane.knserve("func", "create", "-t", "predictor", "iris", "--path", str(folder))
    assert created.returncode == 0, created.stderr
    first = plane.knserve("func", "deploy", "--path", str(folder))
    assert first.returncode == 0, first.stderr + plane.log()
    assert "Function created: http://iris.default.localhost (revision iris-00001)" in first.stdout

    iris = "iris.default.localhost"
    setosa = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    answer = plane.call(iris, "/v1/models/iris:predict", "POST", json=setosa)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [0]}

    # the user changes the code: a new build, a new revision
    source = folder / "function" / "func.py"
    source.write_text(
        source.read_text().replace(
            "    def postprocess(self, result, headers=None):\n        return result",
            "    def postprocess(self, result, headers=None):\n"
            "        return {**result, 'revision': __import__('os').environ['K_REVISION']}",
        )
    )
    second = plane.knserve("func", "deploy", "--path", str(folder))
    assert second.returncode == 0, second.stderr + plane.log()
    assert "Function updated: http://iris.default.localhost (revision iris-00002)" in second.stdout

    split = plane.knserve("service", "update", "iris", "--traffic", "iris-00001=80,@latest=20")
    assert split.returncode == 0, split.stderr
    assert "is ready at URL" in split.stdout

    counts: collections.Counter[str] = collections.Counter()

    def predict(_: int) -> str:
        response = plane.call(iris, "/v1/models/iris:predict", "POST", json=setosa)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == [0]
        return str(response.json().get("revision", "iris-00001"))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        counts.update(pool.map(predict, range(1000)))
    assert 150 <= counts["iris-00002"] <= 250, counts
    assert counts["iris-00001"] + counts["iris-00002"] == 1000

    described = plane.knserve("service", "describe", "iris")
    assert described.returncode == 0, described.stderr
    assert "80%  iris-00001 #1" in described.stdout
    assert "20%  @latest (iris-00002) #2" in described.stdout
    assert "Replicas:  1/1 (panic: no)" in described.stdout

    revisions = plane.knserve("revision", "list", "-s", "iris").stdout.splitlines()
    assert revisions[0].split() == [
        "NAME",
        "SERVICE",
        "TRAFFIC",
        "TAGS",
        "GENERATION",
        "AGE",
        "CONDITIONS",
        "READY",
        "REASON",
    ]
    assert [line.split()[:3] for line in revisions[1:]] == [
        ["iris-00002", "iris", "20%"],
        ["iris-00001", "iris", "80%"],
    ]
    route = plane.knserve("route", "describe", "iris", "-o", "json")
    assert json.loads(route.stdout)["status"]["url"] == "http://iris.default.localhost"
    routed = plane.knserve("revision", "delete", "iris-00001")
    assert routed.returncode == 1
    assert "revision 'iris-00001' is routed (80%); move its traffic" in routed.stderr


def test_up_with_the_example_serves_kserves_iris_and_says_how_to_call_it(
    spawn: Any, tmp_path: Path
) -> None:
    plane = LocalPlane(spawn, tmp_path / "plane", ["--example"])
    try:
        plane.wait_for("inferenceservices", "sklearn-iris", is_ready, timeout=120)
        answer = plane.call(
            "sklearn-iris.default.localhost",
            "/v1/models/sklearn-iris:predict",
            "POST",
            json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
        )
        assert answer.json() == {"predictions": [1]}
        deadline = time.monotonic() + 10
        while "curl -s -H 'Host: sklearn-iris.default.localhost'" not in plane.log():
            assert time.monotonic() < deadline, plane.log()
            time.sleep(0.05)  # the plane prints the curl lines right after Ready
    finally:
        plane.close()
