"""edgeloop runtime layer."""
