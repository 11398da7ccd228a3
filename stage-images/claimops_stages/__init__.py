"""ClaimOps stages: the code that runs in the pipeline's Jobs and in the model server.

Keep this module import-light: the operator and the UI import :mod:`claimops_stages.contract`
without the ML dependencies installed.
"""
