"""edgeloop perception layer."""
