"""`python -m claimops_stages.serving --model-name NAME --model-version N ...` (see config.py)."""

from claimops_stages.serving.server import main

raise SystemExit(main())
