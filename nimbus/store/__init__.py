"""The JSON store: collections in plain files, atomic multi-file commits, schema migrations."""

from nimbus.store.jsonstore import SCHEMA_VERSION, Store

__all__ = ["SCHEMA_VERSION", "Store"]
