"""LSIC: an edge-cloud learned image codec."""

__version__ = "0.1.0"
