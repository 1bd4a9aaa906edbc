"""`python -m hub.server [OPTIONS]`: the same command as `genhub serve`."""

from hub.server.commands import serve

serve(prog_name="python -m hub.server")
