"""Dashboard accounts: users with roles, login sessions, API tokens and the generated session secret.

Tables in ``models.py``, every query in ``service.py``, the ``coffee-scraper users`` commands in ``cli.py``.
HTTP concerns (cookies, CSRF, role checks per request) live in ``web/security.py``, not here.
"""
