"""The embedded gRPC server of genhub (package hub.v1): `genhub serve`.

``hub.server.app`` starts it, ``hub.server.services`` holds the servicers,
the generation servicer runs on ``hub.engine``, ``hub.server.status``
the one mapping of domain errors to status codes, ``hub.server.requests`` the
request parsing and limits, ``hub.server.convert`` the registry messages (the
wire codecs the client shares are ``hub.codecs``). Kept import-light: the CLI
imports ``hub.server.commands`` at start-up.
"""
