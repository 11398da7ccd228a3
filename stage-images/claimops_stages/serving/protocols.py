"""The protocols the model server speaks: one list for the server's routes and its metrics'
``protocol`` label, the ModelDeployment's ``status.protocols`` (the operator) and the UI.
Import-light: the operator imports it without the serving dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    #: The `protocol` label of claimops_model_server_requests_total.
    name: str
    title: str
    #: The scoring path; ``{model}`` stands for the registered model's name.
    path: str

    def describe(self, model: str) -> dict[str, str]:
        return {"name": self.name, "title": self.title, "path": self.path.format(model=model)}


PREDICT = Protocol("predict", "ClaimOps predict", "/predict")
OPEN_INFERENCE_V2 = Protocol("v2", "Open Inference Protocol v2 (REST)", "/v2/models/{model}/infer")
MLFLOW_SCORING = Protocol("mlflow", "MLflow scoring protocol", "/invocations")
PROTOCOLS: tuple[Protocol, ...] = (PREDICT, OPEN_INFERENCE_V2, MLFLOW_SCORING)


def described(model: str) -> list[dict[str, str]]:
    """``status.protocols`` of a ModelDeployment serving ``model``."""
    return [protocol.describe(model) for protocol in PROTOCOLS]
