"""Deterministic names for the children of a PipelineRun.

A restarted operator must find the Job it already created instead of starting the stage
again, so a Job's name is a pure function of (run, stage, attempt), like Tekton's
``<pipelinerun>-<task>`` TaskRun names.
"""

from __future__ import annotations

import hashlib
import re

#: A Job's name ends up in the `batch.kubernetes.io/job-name` label of its pods, so it must be
#: a DNS-1123 label: at most 63 characters of [a-z0-9-], starting and ending alphanumeric.
MAX_NAME_LENGTH = 63
#: Hex characters of the SHA-256 digest appended to names that had to be shortened or cleaned.
HASH_LENGTH = 10

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def job_name(run: str, stage: str, attempt: int) -> str:
    """`<run>-<stage>-<attempt>`, or a shortened, hash-suffixed DNS label when that is not one.

    The plain form is used whenever it is already a valid DNS label of at most 63 characters
    (the CRD limits run names to 40 characters, so every seed stage fits). Otherwise the run
    part is cut and cleaned, and a digest of the *full* plain form keeps names of different
    runs apart; stage and attempt stay readable at the end.
    """
    plain = f"{run}-{stage}-{attempt}"
    if len(plain) <= MAX_NAME_LENGTH and DNS_LABEL.match(plain):
        return plain
    digest = hashlib.sha256(plain.encode()).hexdigest()[:HASH_LENGTH]
    tail = _clean(f"{stage}-{attempt}")
    room = MAX_NAME_LENGTH - len(tail) - len(digest) - 2
    if room < 1:  # an absurdly long stage name: keep only what fits
        return f"{_clean(plain)[: MAX_NAME_LENGTH - len(digest) - 1].rstrip('-')}-{digest}"
    head = _clean(run)[:room].strip("-")
    return "-".join(part for part in (head, digest, tail) if part)


def _clean(text: str) -> str:
    return _NOT_DNS.sub("-", text.lower()).strip("-")
