"""Part names and matte channel names: one rule for the core, the Nuke node and the Blender add-on.

A part name becomes an EXR layer (``smite_<part>.A``), a Nuke layer and a Blender socket name, so
the core refuses what a host could not show. Standard library only, Python 3.9-safe.
"""

from __future__ import annotations

import re
from typing import List, Sequence

PART_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
LAYER_PREFIX = "smite_"  # a part's matte layer: smite_<part>
ALPHA = "A"  # the one channel of that layer in the EXR


def layer_name(part: str) -> str:
    """The matte layer of ``part``: ``smite_<part>``."""
    return LAYER_PREFIX + part


def channel_name(part: str) -> str:
    """EXR channel that holds ``part``: ``smite_<part>.A``."""
    return f"{layer_name(part)}.{ALPHA}"


def check_part_names(parts: Sequence[str], what: str = "part") -> List[str]:
    """``parts`` as a list when the core accepts them all; ValueError naming the first it would refuse.

    ``what`` is the host's word for where a part comes from (``"Roto layer"``, ``"mask layer"``).
    """
    if not parts:
        raise ValueError(f"no parts: each {what} is one part, named after it")
    seen = set()
    for name in parts:
        if not PART_NAME.match(name):
            raise ValueError(f"{what} {name!r} is not a valid part name "
                             "(start with a letter; letters, digits and _ only)")
        if name in seen:
            raise ValueError(f"two {what}s are called {name!r}: part names must be unique")
        seen.add(name)
    return list(parts)
