"""The S3 subsystem (SeaweedFS across nodes): instances, their task types, node hooks."""

from __future__ import annotations

from nimbus.server.s3.tasks import TASK_TYPES

__all__ = ["TASK_TYPES"]
