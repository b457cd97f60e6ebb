"""Nuke start-up for SMITE: this folder is the plugin path that install/nuke_install.py registers.

It makes the `nuke_smite` package importable and loads the core's stdlib-only host API. The
package's own modules stay off ``sys.path`` as top-level names (they would shadow a studio's
``jobs`` or ``manifest``), which is why this start-up folder is separate from the package.
"""

import os
import sys


def _repo_dir():
    """``$SMITE_NUKE_ROOT`` (set by the installed block), else two folders above this file."""
    root = os.environ.get("SMITE_NUKE_ROOT", "")
    if root:
        return root
    try:
        return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except NameError:  # some hosts exec start-up files without __file__
        return ""


_root = _repo_dir()
if _root and _root not in sys.path:
    sys.path.insert(0, _root)

try:
    from nuke_smite import hostconfig as _hostconfig

    _hostconfig.hostapi("names")  # load the core's host API now, so a missing core is said at start-up
except ImportError as _exc:  # never stop Nuke from starting
    sys.stderr.write("SMITE: %s (check SMITE_NUKE_ROOT and SMITE_CORE)\n" % _exc)
