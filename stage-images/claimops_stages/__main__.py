"""`python -m claimops_stages <stage> [--run ... --seed ...]`: run one pipeline stage."""

from claimops_stages.runner import main

raise SystemExit(main())
