"""LSIC's model packages, one folder each (lsic.codec.package finds them here when installed)."""
