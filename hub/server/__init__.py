"""The embedded gRPC server of genhub (package hub.v1): `genhub serve`.

``hub.server.app`` starts it, ``hub.server.services`` holds the servicers,
``hub.server.batching`` the per-model dynamic batching, ``hub.server.status``
the one mapping of domain errors to status codes, ``hub.server.convert`` the
request limits and message conversions. Kept import-light: the CLI imports
``hub.server.commands`` at start-up.
"""
