"""When runs happen: cadences, the in-process scheduler (embedded mode) and procrastinate workers (distributed).

Modules: ``cadence`` (cron, pure), ``models``/``service`` (tables and queries), ``execute`` (the one task body
both modes run), ``embedded`` (asyncio scheduler inside ``serve``), ``distributed`` (procrastinate app and
worker), ``runtime`` (process identity and mode), ``commands`` (CLI). The scraping itself is ``pipeline/``.
"""
