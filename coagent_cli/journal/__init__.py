"""Durable record of a run: the SQLite journal and the content-addressed blob store."""

from coagent_cli.journal.blobs import BlobStore, FileImage
from coagent_cli.journal.store import Effect, Event, Journal, OpRecord

__all__ = ["BlobStore", "Effect", "Event", "FileImage", "Journal", "OpRecord"]
