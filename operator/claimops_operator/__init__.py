"""ClaimOps operator: a Kopf operator that reconciles PipelineRun custom resources.

`pipeline` holds the pure stage-transition logic (spec + status + observed Jobs and
ModelDeployments in, new status + actions out), `conditions` the status-condition helpers and
`naming` the deterministic names of child objects. The Kopf handlers carry the actions out.
"""
