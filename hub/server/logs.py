"""How `genhub serve` logs: readable text, or JSON lines for a log system (``--log-format json``).

In JSON, every record is one object per line with ``time`` (UTC, ISO 8601), ``level``,
``logger`` and ``message``; the access log (``hub.access``, one record per generation
request, see ``hub.metrics``) adds ``request_id``, ``model``, ``version``, ``code``,
``duration_s`` and ``queue_s``. Access records are on in JSON and off in text (one line
per request is noise on a terminal).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

FORMATS = ("text", "json")
ACCESS_FIELDS = ("request_id", "model", "version", "code", "duration_s", "queue_s")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({name: getattr(record, name) for name in ACCESS_FIELDS if hasattr(record, name)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(fmt: str = "text") -> None:
    """Send the process's logs to stderr in ``fmt`` (text or json)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("hub.access").setLevel(logging.INFO if fmt == "json" else logging.WARNING)
