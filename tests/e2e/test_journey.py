"""The README's kubectl journey, as written, on the kind cluster: the example run through CI,
the CD gate, the approval, staging, shadow and promotion; a second commit evaluated against
the champion; then the documented rollback. The tests share the cluster and run in order."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import MODEL, REPO, KindCluster, champion_version, pipelinerun

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]
RUN = "demo-3f9c2ab"
SECOND = "demo-second-7d1e0fa"
#: Who approves the second commit (impersonated by kind's admin, in the chart's approvers group).
REVIEWERS = ("e2e-reviewer", "e2e-reviewer-2")
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


def test_staging_speaks_every_protocol_its_status_lists_with_the_same_answers(
    kind: KindCluster, stage_image: str
) -> None:
    """The image's server, from a pod: the Open Inference Protocol v2 and MLflow's /invocations
    at the paths status.protocols gives, and /predict, score the same claims identically."""
    status = kind.get("mdep", f"{MODEL}-staging")["status"]
    paths = {p["name"]: p["path"] for p in status["protocols"]}
    assert paths == {"predict": "/predict", "v2": f"/v2/models/{MODEL}/infer", "mlflow": "/invocations"}
    script = (
        "import json, urllib.request\n"
        "from claimops_stages.claims import CATEGORICAL_FEATURES, FEATURES, generate_claims\n"
        "from claimops_stages.shadow import claims_payload\n"
        "claims = claims_payload(generate_claims(5, seed=21))\n"
        "def kind_of(f): return 'BYTES' if f in CATEGORICAL_FEATURES else ('INT64' if f == 'patient_age' else 'FP64')\n"
        "bodies = {\n"
        "  'predict': {'claims': claims},\n"
        "  'v2': {'inputs': [{'name': f, 'datatype': kind_of(f), 'shape': [len(claims)],\n"
        "                     'data': [c[f] for c in claims]} for f in FEATURES]},\n"
        "  'mlflow': {'dataframe_split': {'columns': list(FEATURES), 'data': [[c[f] for f in FEATURES] for c in claims]}},\n"
        "}\n"
        f"paths = {paths!r}\n"
        "out = {}\n"
        "for name, body in bodies.items():\n"
        f"    req = urllib.request.Request({status['url']!r} + paths[name], json.dumps(body).encode(),\n"
        "                                 {'Content-Type': 'application/json'})\n"
        "    out[name] = json.loads(urllib.request.urlopen(req, timeout=30).read())\n"
        "print(json.dumps(out))\n"
    )
    log = kind.run_in_cluster("e2e-protocols-staging", stage_image, ["python", "-c", script])
    answers = json.loads(log.strip().splitlines()[-1])
    predicted = [p["probability_approved"] for p in answers["predict"]["predictions"]]
    v2 = {o["name"]: o["data"] for o in answers["v2"]["outputs"]}
    assert v2["probability_approved"] == predicted, answers
    assert [p["probability_approved"] for p in answers["mlflow"]["predictions"]] == predicted, answers
    assert str(answers["v2"]["model_version"]) == STATE["first"], answers


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
    # Two approvals this time (the run asks for more than the chart's quorum of 1).
    approval = {"decision": "Pending", "policy": {"quorum": 2}}
    manifest = pipelinerun(
        SECOND, "7d1e0fa" + "0" * 33, autoContinueToCD=True, training=training, approval=approval
    )
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
    for reviewer in REVIEWERS:
        kind.kubectl(
            "patch", "cpr", SECOND, "--type", "merge", f"--as={reviewer}", "--as-group=claimops:operators",
            "-p", json.dumps({"spec": {"approval": {"decision": "Approved", "comment": f"ok from {reviewer}"}}}),
        )  # fmt: skip
        if reviewer == REVIEWERS[0]:
            kind.wait_for(
                "1 of 2 approvals",
                lambda: (kind.get("cpr", SECOND)["status"].get("approval") or {}).get("approvals") == 1,
                timeout=120,
            )
            assert kind.get("cpr", SECOND)["status"]["phase"] == "AwaitingApproval"
    kind.kubectl("wait", "--for=condition=Succeeded", f"cpr/{SECOND}", "--timeout=20m", timeout=1300)
    run = kind.get("cpr", SECOND)
    second = str(run["status"]["mlflow"]["modelVersion"])
    assert second != first
    STATE["second"] = second
    assert champion_version(mlflow) == second
    assert run["status"]["approval"]["approvedBy"] == list(REVIEWERS)
    production = kind.get("mdep", PRODUCTION)
    assert str(production["status"]["servingVersion"]) == second
    # `kubectl get mdep claim-settlement-production -o yaml` shows who approved what.
    served = production["status"]["history"][-1]
    assert (served["version"], served["pipelineRun"], served["approvedBy"]) == (
        second,
        SECOND,
        list(REVIEWERS),
    )
    assert served["submitter"] == "kubernetes-admin"
    STATE["release_digest"] = served["releaseDigest"]


def test_the_promoted_version_has_a_release_record_matching_its_digest(mlflow: httpx.Client) -> None:
    version = STATE["second"]
    answer = mlflow.get("/api/2.0/mlflow/model-versions/get", params={"name": MODEL, "version": version})
    answer.raise_for_status()
    tags = {t["key"]: t["value"] for t in answer.json()["model_version"].get("tags", [])}
    digest, uri = tags["claimops.release.digest"], tags["claimops.release.uri"]
    assert digest == STATE["release_digest"]
    run_id, path = uri.removeprefix("runs:/").split("/", 1)
    record = mlflow.get("/get-artifact", params={"run_uuid": run_id, "path": path})
    record.raise_for_status()
    assert "sha256:" + hashlib.sha256(record.content).hexdigest() == digest
    statement = json.loads(record.content)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["name"] == f"models:/{MODEL}/{version}"
    predicate = statement["predicate"]
    assert predicate["commit"]["sha"].startswith("7d1e0fa")
    assert predicate["submitter"]["username"] == "kubernetes-admin"
    assert [(a["user"], a["decision"]) for a in predicate["approvals"]] == [
        (r, "Approved") for r in REVIEWERS
    ]
    assert all(a["at"] for a in predicate["approvals"])
    assert predicate["dataset"]["rows"]
    assert predicate["training"]["nEstimators"] == 150
    # The digest of the image that ran full-train, as kind's containerd reported it.
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", predicate["trainedBy"]["imageDigest"] or ""), predicate[
        "trainedBy"
    ]
    assert predicate["mlflow"]["modelVersion"] == version
    assert predicate["mlflow"]["runIds"]
    evaluation = predicate["evaluation"]
    assert evaluation["candidateAuc"]
    assert evaluation["championVersion"] == STATE["first"]
    assert evaluation["ciLow"] is not None
    assert evaluation["ciHigh"] is not None
    assert predicate["shadow"]["agreement"] is not None
    assert predicate["promoter"] == ", ".join(REVIEWERS)
    assert predicate["times"]["promotedAt"]
    assert predicate["times"]["approvedAt"]


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
    # Who rolled back and why: attributed at admission, kept in history and on the version.
    restored = status["history"][-1]
    assert (restored["reason"], restored["requestedBy"]) == ("Rollback", "kubernetes-admin"), restored
    assert restored["comment"] == "v2 over-approves dental claims"
    restored_version = mlflow.get(
        "/api/2.0/mlflow/model-versions/get", params={"name": MODEL, "version": STATE["first"]}
    )
    tags = {t["key"]: t["value"] for t in restored_version.json()["model_version"].get("tags", [])}
    assert tags["claimops.rollback.by"] == "kubernetes-admin"
    kind.kubectl("rollout", "status", f"deployment/{PRODUCTION}", "--timeout=5m", timeout=320)
    answer = post_claims_from_a_pod(kind, stage_image, status["url"], "e2e-post-production")
    assert str(answer["model_version"]) == STATE["first"], answer
