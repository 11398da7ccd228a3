"""`python -m claimops_ui`: serve the UI on $CLAIMOPS_UI_PORT (default 8000), host 0.0.0.0."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .config import UiConfig


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = UiConfig.from_env()
    uvicorn.run(create_app(config), host=config.host, port=config.port, proxy_headers=True, log_level="info")


if __name__ == "__main__":
    main()
