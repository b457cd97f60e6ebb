"""SMITE for Nuke: the "SMITE Matte" node (a Python-built Group) and its helpers.

Only `node` and `render_refs` import ``nuke``; every other module is plain Python (3.9-safe)
so it can be tested without a Nuke licence. The heavy core runs in its own venv as a
`smite serve` subprocess, reached through the core's stdlib-only host API (`hostconfig.hostapi`).
"""

__version__ = "0.1.0"
