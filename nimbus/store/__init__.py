"""The JSON store: collections in plain files, atomic multi-file commits, schema migrations."""

from nimbus.store.jsonstore import HOT_READ_MAX_AGE_SEC, SCHEMA_VERSION, Store

__all__ = ["HOT_READ_MAX_AGE_SEC", "SCHEMA_VERSION", "Store"]
