"""Training: a RandomForest settlement model in a sklearn Pipeline, its metrics, and the
explanations logged with it (feature importance and a SHAP summary plot).

Pure functions: nothing here talks to MLflow, so the ci-tests self-checks and the unit tests
can use them directly; ``stages.py`` logs what they return.
"""

from __future__ import annotations

import copy
import importlib.metadata
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from claimops_stages.claims import CATEGORICAL_FEATURES, CATEGORIES, FEATURES, NUMERIC_FEATURES, labels

#: Types skops must be told to trust when loading this pipeline (everything else in it is a
#: type skops trusts by default); found with skops.io.get_untrusted_types on a dumped model.
SKOPS_TRUSTED_TYPES: list[str] = ["sklearn.tree._tree.Tree"]

#: The distributions loading the pipeline needs, pinned to the versions in this image (MLflow
#: adds itself). Naming them spares MLflow's requirement inference, which loads the model
#: again in a subprocess to see what it imports: about 9 s of each logged model.
MODEL_DISTRIBUTIONS = ("scikit-learn", "skops", "scipy", "numpy", "pandas")


def model_requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in MODEL_DISTRIBUTIONS]


#: SHAP cost grows with rows x trees x leaves. Exact TreeSHAP on all 200 trees of depth 12
#: takes ~43 s for 1,000 rows on two cores, so we explain SHAP_ROWS rows with exact
#: (tree-path-dependent) TreeSHAP on a SHAP_TREES-tree subset of the forest. A random
#: forest's trees are i.i.d., and SHAP values are linear in the trees, so the subset's SHAP
#: values are an unbiased estimate of the whole forest's.
SHAP_ROWS = 500
SHAP_TREES = 64


@dataclass(frozen=True)
class TrainingConfig:
    n_estimators: int = 200
    max_depth: int = 12
    min_samples_leaf: int = 5
    test_size: float = 0.2
    seed: int = 42
    n_jobs: int = -1

    def params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "min_samples_leaf": self.min_samples_leaf,
            "test_size": self.test_size,
            "seed": self.seed,
            "encoding": "one-hot(cpt_bucket, provider_type, diagnosis_group) + raw numerics",
        }


@dataclass
class TrainingOutcome:
    pipeline: Pipeline
    metrics: dict[str, float]
    train_rows: int
    test_rows: int
    seconds: float
    #: Holdout features and labels, for explanations and the signature.
    x_test: pd.DataFrame = field(repr=False)
    y_test: np.ndarray = field(repr=False)


def model_frame(claims: pd.DataFrame) -> pd.DataFrame:
    """The model's input: the seed's six features, categoricals as plain strings (what a
    model server receives as JSON), numerics as floats."""
    frame = pd.DataFrame(index=claims.index)
    for name in FEATURES:
        if name in CATEGORICAL_FEATURES:
            frame[name] = claims[name].astype(str).astype(object)
        else:
            frame[name] = claims[name].astype(float)
    return frame


def build_pipeline(config: TrainingConfig) -> Pipeline:
    encoder = ColumnTransformer(
        [
            (
                "categorical",
                # Fixed category lists: a category unseen in training (or a drifted one)
                # encodes as all zeros instead of failing at serving time.
                OneHotEncoder(
                    categories=[list(CATEGORIES[c]) for c in CATEGORICAL_FEATURES],
                    handle_unknown="ignore",
                    sparse_output=False,
                    dtype=np.float32,
                ),
                list(CATEGORICAL_FEATURES),
            ),
            ("numeric", "passthrough", list(NUMERIC_FEATURES)),
        ],
        verbose_feature_names_out=False,
    )
    forest = RandomForestClassifier(
        n_estimators=config.n_estimators,
        max_depth=config.max_depth,
        min_samples_leaf=config.min_samples_leaf,
        n_jobs=config.n_jobs,
        random_state=config.seed,
    )
    return Pipeline([("encode", encoder), ("forest", forest)])


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    predicted = (proba >= threshold).astype(int)
    return {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "auc_roc": float(roc_auc_score(y_true, proba)) if len(np.unique(y_true)) > 1 else 0.5,
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
    }


def approval_probability(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """P(Approved) from a fitted pipeline (class 1 is Approved)."""
    return np.asarray(model.predict_proba(frame))[:, 1]


def train(claims: pd.DataFrame, config: TrainingConfig) -> TrainingOutcome:
    """Fit on a stratified split of `claims` and score the held-out part."""
    started = time.perf_counter()
    x = model_frame(claims)
    y = labels(claims)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=config.test_size, random_state=config.seed, stratify=y
    )
    pipeline = build_pipeline(config)
    pipeline.fit(x_train, y_train)
    metrics = classification_metrics(y_test, approval_probability(pipeline, x_test))
    return TrainingOutcome(
        pipeline=pipeline,
        metrics=metrics,
        train_rows=len(x_train),
        test_rows=len(x_test),
        seconds=time.perf_counter() - started,
        x_test=x_test,
        y_test=y_test,
    )


def _feature_groups(pipeline: Pipeline) -> tuple[list[str], np.ndarray]:
    """The encoded column names and, for each, the index of the seed feature it came from."""
    encoded = list(pipeline.named_steps["encode"].get_feature_names_out())
    groups = []
    for column in encoded:
        source = next(f for f in FEATURES if column == f or column.startswith(f + "_"))
        groups.append(FEATURES.index(source))
    return encoded, np.array(groups)


def feature_importance(pipeline: Pipeline) -> dict[str, float]:
    """Impurity importance per seed feature (one-hot columns summed back together)."""
    _, groups = _feature_groups(pipeline)
    importances = pipeline.named_steps["forest"].feature_importances_
    summed = np.bincount(groups, weights=importances, minlength=len(FEATURES))
    return {name: float(summed[i]) for i, name in enumerate(FEATURES)}


@dataclass
class ShapSummary:
    #: (rows, features) SHAP values of P(Approved), per seed feature.
    values: np.ndarray
    #: The explained rows, categoricals as category codes (to colour the plot).
    feature_values: np.ndarray
    rows: int
    trees: int
    method: str
    seconds: float

    def mean_abs(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(FEATURES, np.abs(self.values).mean(axis=0), strict=True)}

    def params(self) -> dict[str, Any]:
        return {"shap_method": self.method, "shap_rows": self.rows, "shap_trees": self.trees}


def shap_summary(
    pipeline: Pipeline, frame: pd.DataFrame, rows: int = SHAP_ROWS, trees: int = SHAP_TREES, seed: int = 0
) -> ShapSummary:
    """SHAP values of P(Approved) for a sample of `frame`, summed per seed feature."""
    import shap

    started = time.perf_counter()
    sample = frame.sample(n=min(rows, len(frame)), random_state=seed)
    encoded_sample = pipeline.named_steps["encode"].transform(sample)
    forest = pipeline.named_steps["forest"]
    subset = forest
    if trees < len(forest.estimators_):
        # A shallow copy sharing the fitted trees: no tree is copied or refitted.
        subset = copy.copy(forest)
        subset.estimators_ = forest.estimators_[:trees]
        subset.n_estimators = trees
    explainer = shap.TreeExplainer(subset, feature_perturbation="tree_path_dependent")
    values = np.asarray(explainer.shap_values(encoded_sample, check_additivity=False))
    if values.ndim == 3:  # (rows, columns, classes) in recent shap: keep class 1 (Approved)
        values = values[:, :, 1]
    _, groups = _feature_groups(pipeline)
    per_feature = np.zeros((values.shape[0], len(FEATURES)))
    for column, group in enumerate(groups):
        per_feature[:, group] += values[:, column]
    colours = np.column_stack(
        [
            sample[f].map({c: i for i, c in enumerate(CATEGORIES[f])}).to_numpy(dtype=float)
            if f in CATEGORICAL_FEATURES
            else sample[f].to_numpy(dtype=float)
            for f in FEATURES
        ]
    )
    return ShapSummary(
        values=per_feature,
        feature_values=colours,
        rows=len(sample),
        trees=len(subset.estimators_),
        method="exact TreeSHAP (tree_path_dependent) on a tree subset",
        seconds=time.perf_counter() - started,
    )


def plot_feature_importance(importance: dict[str, float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(importance, key=importance.__getitem__)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh(names, [importance[n] for n in names], color="#3b6ea8")
    ax.set_xlabel("mean decrease in impurity")
    ax.set_title("Feature importance (settlement model)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_shap_summary(summary: ShapSummary, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    shap.summary_plot(
        summary.values,
        summary.feature_values,
        feature_names=list(FEATURES),
        show=False,
        plot_size=(8, 5),
    )
    fig = plt.gcf()
    fig.suptitle(f"SHAP summary: {summary.rows} claims, {summary.trees} trees", fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
