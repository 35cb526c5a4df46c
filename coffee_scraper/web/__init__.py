"""HTTP endpoints for operators: /metrics, /health, /health/ready (see ``app.py``)."""

from coffee_scraper.web.app import create_app

__all__ = ["create_app"]
