"""The ClaimOps model server: one registered model version (plus an optional A/B challenger)
behind FastAPI, with ONNX Runtime inference when it is exact and adaptive micro-batching.

Modules: ``config`` (CLI), ``source`` (MLflow registry), ``inference`` (ONNX/sklearn and the
exactness check), ``batching`` (micro-batcher), ``schema`` (request validation), ``abtest``
(traffic split), ``metrics`` (Prometheus), ``app`` (routes), ``server`` (entry point).
"""
