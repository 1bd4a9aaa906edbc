"""Built-in plugins, registered like any other (see hub.plugins.DEFAULT_PLUGINS)."""
