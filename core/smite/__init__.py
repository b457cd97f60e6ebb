"""SMITE for compositors: few-shot, temporally consistent video part mattes.

The package is a host-agnostic core; hosts (Nuke, Blender, farm) talk to it through
`smite.hostapi` (stdlib only) or the `smite` command line.
"""

__version__ = "0.1.0"
