"""Exceptions of incident handling; each message names the input, what is wrong and what to do.

Views map them to HTTP answers (400, 404, 409), the CLI to exit code 2. Nothing else lives here.
"""

from __future__ import annotations


class IncidentError(ValueError):
    """A request that cannot be carried out as given (HTTP 400)."""


class NotFound(IncidentError):
    """No incident, silence or maintenance window with that id (HTTP 404)."""


class Conflict(IncidentError):
    """The change does not fit the current state, e.g. updating a resolved incident (HTTP 409)."""
