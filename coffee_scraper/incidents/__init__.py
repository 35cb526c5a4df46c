"""Incident handling: the runbook's classification as data (``alert_config``) and its Prometheus export."""
