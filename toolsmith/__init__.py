"""The privileged ToolSmith (DESIGN.md section 3): turns recurring raw bash commands into
declared tools, footprint and inverse included, while the run goes on.

    mine.py        raw command lines (and what they wrote) out of a run journal
    generalise.py  recurring lines -> a tool spec (pure)
    smith.py       check each candidate in a scratch copy; register the good ones
    cli.py         `coagent toolsmith`
"""

from toolsmith.generalise import Candidate, Sample, generalise
from toolsmith.smith import Outcome, ToolSmith

__all__ = ["Candidate", "Outcome", "Sample", "ToolSmith", "generalise"]
