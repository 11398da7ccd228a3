"""ClaimOps web UI: a small FastAPI app that reads PipelineRun/ModelDeployment status and patches
the same fields kubectl patches, as the signed-in user (Kubernetes impersonation)."""

__version__ = "0.1.0"
