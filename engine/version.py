"""The engine version: written into every shard's schema metadata and run record."""

__version__ = "0.1.0"
