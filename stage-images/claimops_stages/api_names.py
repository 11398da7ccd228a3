"""The names ClaimOps uses in the Kubernetes API: its group, version, kinds, labels, annotations.

The operator, the UI and the tests spell these names from here, so a typo cannot split them.
The CRD YAML in ``crds/`` stays the source of truth for the resources themselves; a unit test
checks that this module agrees with it. Standard library only (the UI and the operator import
it without the ML dependencies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

GROUP: Final = "claimops.io"
#: The in-toto predicate type of a release record (claimops_stages.release).
RELEASE_PREDICATE_TYPE: Final = f"https://{GROUP}/release/v1"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Resource:
    """One ClaimOps custom resource, named as its CRD names it."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]

    @property
    def crd_name(self) -> str:
        """``<plural>.<group>``: the CRD's name, also what ``kubectl auth can-i`` takes."""
        return f"{self.plural}.{GROUP}"


PIPELINE_RUN: Final = Resource("PipelineRun", "pipelineruns", "pipelinerun", ("cpr",))
MODEL_DEPLOYMENT: Final = Resource("ModelDeployment", "modeldeployments", "modeldeployment", ("mdep",))
RESOURCES: Final = (PIPELINE_RUN, MODEL_DEPLOYMENT)

PIPELINERUNS: Final = PIPELINE_RUN.plural
MODELDEPLOYMENTS: Final = MODEL_DEPLOYMENT.plural

# Well-known labels (https://kubernetes.io/docs/reference/labels-annotations-taints/).
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
#: The label the Job controller puts on a Job's pods.
LABEL_JOB_NAME: Final = "batch.kubernetes.io/job-name"

#: ``app.kubernetes.io/part-of`` of everything the operator or the UI creates.
PART_OF: Final = "claimops"
#: ``app.kubernetes.io/managed-by`` of what the operator creates; also its field manager.
MANAGED_BY: Final = "claimops-operator"

# ClaimOps labels.
#: The PipelineRun a stage Job (or a ModelDeployment) belongs to.
LABEL_RUN: Final = f"{GROUP}/pipeline-run"
LABEL_STAGE: Final = f"{GROUP}/stage"
LABEL_ATTEMPT: Final = f"{GROUP}/attempt"
#: staging, shadow or production.
LABEL_ROLE: Final = f"{GROUP}/role"
#: The ModelDeployment a model-server Deployment or rollback Job belongs to.
LABEL_MODEL_DEPLOYMENT: Final = f"{GROUP}/model-deployment"
#: Who created a PipelineRun (``ui`` for the web UI).
LABEL_CREATED_BY: Final = f"{GROUP}/created-by"

# ClaimOps annotations.
#: On a ModelDeployment: the PipelineRun that asked for it (and waits for it to be Ready).
REQUESTED_BY_RUN: Final = f"{GROUP}/requested-by-run"
#: On the production ModelDeployment: the release that asked for it (JSON: pipelineRun,
#: submitter, approvedBy, releaseDigest, releaseUri), copied into its status.history.
RELEASE: Final = f"{GROUP}/release"
#: On a model-server Deployment: the hash of the desired state it was applied from.
SPEC_HASH: Final = f"{GROUP}/spec-hash"
#: On a model-server pod template: changing it restarts the pods.
RESTART_TOKEN: Final = f"{GROUP}/restart-token"
#: On a PipelineRun the UI created: the signed-in user who asked for it.
CREATED_BY_USER: Final = f"{GROUP}/created-by-user"
