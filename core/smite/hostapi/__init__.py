"""The host API: everything a host (Nuke, Blender, a pipeline script) needs from the core, stdlib only.

Hosts run their own Python (no torch, maybe 3.9), so nothing here imports numpy, torch or the rest
of `smite`, and modules import each other only relatively: both hosts load this folder under a
private package name through one loader (``blender_smite/hostlink.py``).
The core imports from here (part names, error codes); nothing here imports the core.

- `errorcodes`: JSON-RPC error codes and CLI exit statuses.
- `protocol`: line-delimited JSON-RPC framing and message shapes; `client`: ``smite serve`` client.
- `names`: the part-name rule and matte channel names.
- `frames`: artist frame lists; `jobsettings`: a job's ``settings`` and the backends offered; `farmcmd`: farm job files.
- `progress`: a job's progress as a fraction and one status line.
- `shotcache`: the shot cache layout and the shot manifest; `atomic`: files written whole.
- `locate`: the environment of a core subprocess.
"""
