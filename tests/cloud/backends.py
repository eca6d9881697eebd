"""Real PostgreSQL and S3-compatible servers on loopback for the storage backend tests."""

from lsic.testing import PostgresServer, S3Server

__all__ = ["PostgresServer", "S3Server"]
