"""The HTTP API over the published products (``stratocast serve``)."""
