"""The model server's command line, as the ModelDeployment controller uses it."""

from __future__ import annotations

import pytest

from claimops_stages.serving.config import ServerConfig, parse_args


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        pytest.param(
            ["--model-name", "m", "--model-version", "3"],
            {},
            {"model_version": "3", "model_alias": None, "port": 8080, "host": "0.0.0.0"},
            id="version-defaults",
        ),
        pytest.param(
            ["--model-name", "m", "--model-alias", "champion"],
            {"CLAIMOPS_PORT": "9000"},
            {"model_alias": "champion", "port": 9000, "model_ref": "m@champion"},
            id="alias-port-from-env",
        ),
        pytest.param(
            ["--model-name", "m", "--model-version", "3", "--port", "7000"],
            {"CLAIMOPS_PORT": "9000"},
            {"port": 7000, "model_ref": "m/3"},
            id="flag-beats-env",
        ),
        pytest.param(
            [
                "--model-name",
                "m",
                "--model-alias",
                "champion",
                "--ab-challenger-version",
                "4",
                "--ab-traffic-percent",
                "20",
            ],
            {},
            {"ab_challenger_version": "4", "ab_traffic_percent": 20.0},
            id="ab-test",
        ),
        pytest.param(
            ["--model-name", "m", "--model-version", "1", "--inference", "sklearn", "--host", "127.0.0.1"],
            {},
            {"inference": "sklearn", "host": "127.0.0.1", "ab_traffic_percent": 0.0},
            id="sklearn-inference",
        ),
    ],
)
def test_parses(argv: list[str], env: dict[str, str], expected: dict[str, object]) -> None:
    config = parse_args(argv, env)
    assert isinstance(config, ServerConfig)
    assert {k: getattr(config, k) for k in expected} == expected


#: A valid command line: a model name and a version.
M1 = ["--model-name", "m", "--model-version", "1"]


def ab(challenger: str, percent: str) -> list[str]:
    """`M1` with an A/B challenger version and a traffic percentage."""
    return [*M1, "--ab-challenger-version", challenger, "--ab-traffic-percent", percent]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--model-version", "1"], id="no-name"),
        pytest.param(["--model-name", "m"], id="no-version-or-alias"),
        pytest.param([*M1, "--model-alias", "champion"], id="both"),
        pytest.param([*M1, "--ab-challenger-version", "2"], id="ab-no-percent"),
        pytest.param([*M1, "--ab-traffic-percent", "5"], id="percent-no-ab"),
        pytest.param(ab("2", "101"), id="percent-over-100"),
        pytest.param(ab("1", "5"), id="challenger-is-primary"),
    ],
)
def test_refuses(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv, {})
