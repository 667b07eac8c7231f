"""edgeloop calibration layer."""
