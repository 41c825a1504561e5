"""coagent: several LLM agents on one shared live state, serializable in launch order."""

__version__ = "0.1.0"
