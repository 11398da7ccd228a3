"""Stage Job manifests: the run's own stage image wins over the operator's."""

from __future__ import annotations

import pytest

from claimops_operator import builders
from claimops_operator.config import OperatorConfig
from claimops_stages.api_names import RELEASE, REQUESTED_BY_RUN
from claimops_stages.contract import StageInputs

CASES = [
    ("operator-default", None, "claimops/stages:0.1.0"),
    ("run-override", "registry.example/claimops/stages:3f9c2ab", "registry.example/claimops/stages:3f9c2ab"),
]


@pytest.mark.parametrize(("image", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_stage_job_image(image: str | None, expected: str) -> None:
    job = builders.stage_job(
        run="demo",
        namespace="claims",
        stage="ci-tests",
        attempt=1,
        job_name="demo-ci-tests-1",
        inputs=StageInputs(run="demo"),
        deadline_seconds=600,
        config=OperatorConfig(stage_image="claimops/stages:0.1.0"),
        image=image,
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == expected
    assert job["spec"]["activeDeadlineSeconds"] == 600


def test_a_promotion_carries_its_release_summary_onto_the_model_deployment() -> None:
    plain = builders.model_deployment(
        run="demo", namespace="claims", role="staging", model_name="claim-settlement", version="7"
    )
    assert plain["metadata"]["annotations"] == {REQUESTED_BY_RUN: "demo"}
    promoted = builders.model_deployment(
        run="demo", namespace="claims", role="production", model_name="claim-settlement", version="7",
        release='{"pipelineRun": "demo"}',
    )  # fmt: skip
    assert promoted["metadata"]["annotations"] == {
        REQUESTED_BY_RUN: "demo",
        RELEASE: '{"pipelineRun": "demo"}',
    }
