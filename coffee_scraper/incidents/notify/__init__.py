"""Notification delivery: the durable outbox, its delivery worker and one module per channel.

Lives here: ``models`` (outbox + attempt tables), ``config`` (what is configured: settings, roster, links),
``outbox`` (enqueue, claim, deliver, retry, dead-letter, delivery health), ``slack``, ``github``, ``email``,
``webhook`` (one sender each). Does not live here: what to say to whom (``incidents/reactions.py``), the text
of messages (``incidents/templates.py``), the periodic loop (``incidents/runner.py``).
"""
