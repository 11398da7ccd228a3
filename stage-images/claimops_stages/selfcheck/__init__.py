"""The fast self-checks that the ci-tests stage runs inside the stage image.

They ship with the package (so the image tests exactly the code it runs) and take a few
seconds: pytest on the ML code, then a lint pass (pyflakes rules through ruff).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE.parent
#: Read by conftest.py: the failure injection to apply inside the tests.
INJECT_ENV = "CLAIMOPS_SELFCHECK_INJECT"


@dataclass
class SelfCheckReport:
    tests: int
    failures: int
    errors: int
    lint_errors: int
    lint_tool: str
    output: str
    failed_tests: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failures == 0 and self.errors == 0 and self.lint_errors == 0

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        text = (
            f"self-checks {verdict}: {self.tests - self.failures - self.errors}/{self.tests} tests passed, "
            f"{self.lint_errors} lint errors ({self.lint_tool})"
        )
        if self.failed_tests:
            text += "; failed: " + ", ".join(self.failed_tests[:5])
        return text


def _lint() -> tuple[int, str, str]:
    """Pyflakes-level lint of the package: undefined names, unused imports, syntax errors."""
    cmd = [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "E9,F"]
    try:
        done = subprocess.run(
            [*cmd, str(PACKAGE_DIR)], capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        return 1, "ruff", "ruff timed out"
    if "No module named ruff" in done.stderr:
        # No fallback: an image without ruff fails its CI rather than passing a weaker check.
        return 1, "ruff", "ruff is not installed in this image: " + done.stderr.strip()
    count = 0 if done.returncode == 0 else max(1, done.stdout.count("\n") - 2)
    return count, "ruff", done.stdout + done.stderr


def run(inject: str | None = None, timeout: float = 300) -> SelfCheckReport:
    """Run the self-checks in a fresh interpreter and report what happened."""
    with tempfile.TemporaryDirectory(prefix="claimops-selfcheck-") as tmp:
        # An empty ini of our own: the checks must not pick up a project's pytest config.
        ini = Path(tmp, "pytest.ini")
        ini.write_text("[pytest]\n")
        junit = Path(tmp, "junit.xml")
        env = dict(os.environ)
        env.pop(INJECT_ENV, None)
        if inject:
            env[INJECT_ENV] = inject
        cmd = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ini),
            "--rootdir", tmp, f"--junitxml={junit}", str(HERE),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        output = done.stdout + done.stderr
        tests = failures = errors = 0
        failed: list[str] = []
        if junit.exists():
            suite = ET.parse(junit).getroot()
            suite = suite if suite.tag == "testsuite" else suite[0]
            tests = int(suite.get("tests", 0))
            failures = int(suite.get("failures", 0))
            errors = int(suite.get("errors", 0))
            failed = [
                case.get("name", "?")
                for case in suite.iter("testcase")
                if case.find("failure") is not None or case.find("error") is not None
            ]
        elif done.returncode != 0:
            errors = 1
    lint_errors, tool, lint_output = _lint()
    return SelfCheckReport(
        tests, failures, errors, lint_errors, tool, output + "\n--- lint ---\n" + lint_output, failed
    )
