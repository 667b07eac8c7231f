"""edgeloop planning layer."""
