"""Alias moves pushed to servers: PostgreSQL LISTEN/NOTIFY.

``Registry`` sends ``NOTIFY genhub_aliases, '<model>'`` in the transaction that moves an
alias (PostgreSQL delivers it at commit, to every listening connection, on every node).
``AliasWatcher`` listens on a connection of its own, in a daemon thread, and calls
``on_change(model)``; after each (re)connect it calls ``on_change(None)`` ("anything may
have moved while nobody listened"). SQLite has no such channel: servers on SQLite rely on
their resolution cache's TTL.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

ALIAS_CHANNEL = "genhub_aliases"  # payload: the name of the model whose aliases moved


class AliasWatcher:
    """LISTEN on ``ALIAS_CHANNEL`` of the PostgreSQL database at ``url``; reconnects until closed."""

    def __init__(self, url: URL, on_change: Callable[[str | None], None], *, poll_s: float = 0.5,
                 reconnect_s: float = 1.0) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._on_change = on_change
        self._poll_s = poll_s
        self._reconnect_s = reconnect_s
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while a LISTEN connection is up
        self._thread = threading.Thread(target=self._run, name="genhub-alias-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {ALIAS_CHANNEL}")
                    self.listening.set()
                    self._on_change(None)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=self._poll_s):
                            self._on_change(note.payload)
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning("alias notifications lost (%s); reconnecting in %.0f s", exc, self._reconnect_s)
            finally:
                self.listening.clear()
            self._stop.wait(self._reconnect_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._poll_s + 5)
