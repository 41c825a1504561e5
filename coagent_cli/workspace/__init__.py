"""The live workspace: snapshots by a private shadow git, and safe restores."""

from coagent_cli.workspace.shadow import PathChange, Snapshot, Snapshotter, workspace_key

__all__ = ["PathChange", "Snapshot", "Snapshotter", "workspace_key"]
