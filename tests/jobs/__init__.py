"""Tests of jobs/: cadences, the embedded scheduler, distributed workers, the scheduling CLI and readiness."""
