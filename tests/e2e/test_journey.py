"""The README's kubectl journey, as written, on the kind cluster: the example run through CI,
the CD gate, the approval, staging, shadow and promotion; a second commit evaluated against
the champion; then the documented rollback. The tests share the cluster and run in order."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import MODEL, REPO, KindCluster, champion_version, pipelinerun

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]
RUN = "demo-3f9c2ab"
SECOND = "demo-second-7d1e0fa"
PRODUCTION = f"{MODEL}-production"
STATE: dict[str, Any] = {}


def readme_journey() -> list[str]:
    """The commands of the README's "The journey with kubectl" block, joined lines and all."""
    text = (REPO / "README.md").read_text()
    block = text.split("## The journey with kubectl", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        line = line.split("  #", 1)[0].rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if (pending + line).strip():
            commands.append((pending + line).strip())
        pending = ""
    return commands


def post_claims_from_a_pod(kind: KindCluster, image: str, url: str, name: str) -> dict[str, Any]:
    """Post one claim from a pod in the cluster, so the Service name resolves through CoreDNS."""
    script = (
        "import json, urllib.request\n"
        "from claimops_stages.claims import generate_claims\n"
        "from claimops_stages.shadow import claims_payload\n"
        "body = json.dumps({'claims': claims_payload(generate_claims(3, seed=7))}).encode()\n"
        f"req = urllib.request.Request({url!r} + '/predict', body, {{'Content-Type': 'application/json'}})\n"
        "print(urllib.request.urlopen(req, timeout=30).read().decode())\n"
    )
    log = kind.run_in_cluster(name, image, ["python", "-c", script])
    return dict(json.loads(log.strip().splitlines()[-1]))


def test_readme_journey_reaches_production(kind: KindCluster, mlflow: httpx.Client) -> None:
    commands = readme_journey()
    assert commands[0].startswith("kubectl -n claimops apply -f manifests/examples/pipelinerun.yaml")
    kind.kubectl("delete", "cpr", RUN, "--ignore-not-found", "--wait=true")
    STATE["champion_before"] = champion_version(mlflow)
    for command in commands:
        if command.startswith("kubectl") and " -w" in command:
            command = command.replace(" -w", "")  # a watch never ends: read the table once
        done = kind.shell(command)
        assert done.returncode == 0, f"README command failed: {command}\n{done.stdout}{done.stderr}"
        if command.endswith("get cpr"):
            header = done.stdout.splitlines()[0].split()
            assert header == ["NAME", "COMMIT", "STAGE", "SUCCEEDED", "REASON", "APPROVAL", "AUC", "AGE"], (
                done.stdout
            )
        if command.endswith("get mdep"):
            assert "production" in done.stdout, done.stdout
            assert "staging" in done.stdout, done.stdout
    run = kind.get("cpr", RUN)
    status = run["status"]
    assert status["phase"] == "Succeeded", status
    assert [s["state"] for s in status["stages"]] == ["Succeeded"] * len(status["stages"]), status["stages"]
    assert status["approval"]["decision"] == "Approved"
    version = str(status["mlflow"]["modelVersion"])
    STATE["first"] = version
    assert champion_version(mlflow) == version
    production = kind.get("mdep", PRODUCTION)["status"]
    assert str(production["servingVersion"]) == version, production


def test_staging_serves_the_candidate_to_a_pod_through_its_service(
    kind: KindCluster, stage_image: str
) -> None:
    staging = kind.get("mdep", f"{MODEL}-staging")
    url = staging["status"]["url"]
    assert re.match(rf"http://{MODEL}-staging\.{kind.namespace}\.svc(\.cluster\.local)?:\d+", url), url
    answer = post_claims_from_a_pod(kind, stage_image, url, "e2e-post-staging")
    assert len(answer["predictions"]) == 3, answer
    assert str(answer["model_version"]) == STATE["first"], answer


def test_ci_tests_ran_pytest_and_ruff_inside_the_stage_image(kind: KindCluster) -> None:
    job = next(s["job"] for s in kind.get("cpr", RUN)["status"]["stages"] if s["name"] == "ci-tests")
    log = kind.kubectl("logs", f"job/{job}").stdout
    assert re.search(r"\d+ passed", log), log[-2000:]
    assert "--- lint ---" in log, log[-2000:]
    assert "All checks passed!" in log, log[-2000:]
    assert "(ruff)" in log


def test_a_second_commit_is_evaluated_against_the_champion(kind: KindCluster, mlflow: httpx.Client) -> None:
    first = STATE["first"]
    kind.kubectl("delete", "cpr", SECOND, "--ignore-not-found", "--wait=true")
    # Another commit: fewer trees, so the paired bootstrap compares two different models.
    training = {"nEstimators": 150, "maxDepth": 12, "quickSampleFraction": 0.2}
    manifest = pipelinerun(SECOND, "7d1e0fa" + "0" * 33, autoContinueToCD=True, training=training)
    kind.kubectl("apply", "-f", "-", stdin=manifest)
    kind.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=AwaitingApproval",
        f"cpr/{SECOND}",
        "--timeout=20m",
        timeout=1300,
    )
    evaluation = kind.get("cpr", SECOND)["status"]["evaluation"]
    assert str(evaluation["championVersion"]) == first, evaluation
    assert evaluation["passed"] is True, evaluation
    assert evaluation["candidateAuc"] != evaluation["championAuc"], evaluation
    kind.kubectl(
        "patch", "cpr", SECOND, "--type", "merge", "--as=e2e-reviewer", "--as-group=claimops:operators",
        "-p", json.dumps({"spec": {"approval": {"decision": "Approved"}}}),
    )  # fmt: skip
    kind.kubectl("wait", "--for=condition=Succeeded", f"cpr/{SECOND}", "--timeout=20m", timeout=1300)
    second = str(kind.get("cpr", SECOND)["status"]["mlflow"]["modelVersion"])
    assert second != first
    STATE["second"] = second
    assert champion_version(mlflow) == second
    assert str(kind.get("mdep", PRODUCTION)["status"]["servingVersion"]) == second


def test_the_documented_rollback_restores_the_first_version(
    kind: KindCluster, mlflow: httpx.Client, stage_image: str
) -> None:
    readme = (REPO / "README.md").read_text()
    rollback = next(line for line in readme.splitlines() if line.startswith("| roll production back |"))
    command = rollback.split("`")[1]
    done = kind.shell(f"{command.replace('kubectl patch', f'kubectl -n {kind.namespace} patch', 1)}")
    assert done.returncode == 0, done.stderr
    kind.kubectl("wait", "--for=condition=RolledBack", f"mdep/{PRODUCTION}", "--timeout=10m", timeout=700)
    status = kind.get("mdep", PRODUCTION)["status"]
    assert str(status["servingVersion"]) == STATE["first"], status
    assert status["rolledBackFrom"] == STATE["second"], status
    assert champion_version(mlflow) == STATE["first"]
    kind.kubectl("rollout", "status", f"deployment/{PRODUCTION}", "--timeout=5m", timeout=320)
    answer = post_claims_from_a_pod(kind, stage_image, status["url"], "e2e-post-production")
    assert str(answer["model_version"]) == STATE["first"], answer
