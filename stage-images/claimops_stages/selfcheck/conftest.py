"""Fixtures of the shipped self-checks. Failure injection TrainingError arrives here through
the environment and corrupts the training labels, so a real check fails for a real reason."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from claimops_stages.claims import OUTCOMES, TARGET, generate_claims
from claimops_stages.selfcheck import INJECT_ENV


@pytest.fixture(scope="session")
def training_claims() -> pd.DataFrame:
    claims = generate_claims(4000, seed=11)
    if os.environ.get(INJECT_ENV) == "TrainingError":
        # A broken join in the feature pipeline: labels no longer belong to their claims.
        shuffled = np.random.default_rng(0).permutation(claims[TARGET].to_numpy())
        claims[TARGET] = pd.Categorical(shuffled, categories=list(OUTCOMES))
    return claims
