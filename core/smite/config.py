"""Shot manifest and settings: the one home of every tunable number.

A `ShotSpec` says *what* to segment (plate, frames, parts, references); `Settings` says *how*: the
shared settings, and each backend's own beside its backend (`backends.propagate_settings`,
`model.settings`), nested under the backend's name.
Both are frozen dataclasses loaded from JSON with validation, so a bad manifest fails early with
one line naming the field, and a saved job can be compared with a new one (resume, farm chunks).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Mapping

from .backends import BACKEND_NAMES
from .backends.propagate_settings import PropagateSettings
from .errors import BadInputError, ManifestError
from .hostapi.names import PART_NAME
from .io.sequence import format_frame_range, parse_frame_range
from .model.settings import DiffusionSettings
from .settings_json import check_ranges, fields_from_dict, ranged

# 2: each backend's own settings nest under its name; one seed. 3: each backend refines its own mattes to the
# plate (`refine_radius`, `refine_eps`), since their maps differ (see `upgrade_settings_dict`)
SETTINGS_VERSION = 3
MAX_JSON_BYTES = 16 * 1024 * 1024  # a manifest or settings file holds paths and numbers: 16 MiB is generous
# Settings that decide which frames are read or how fast, never what a frame's matte is.
NON_RESULT_SETTINGS = ("context",)
# Each backend's own settings: a `Settings` field named after the backend (the keys of `backends.BACKENDS`).
BACKEND_SETTINGS: dict[str, type] = {"propagate": PropagateSettings, "diffusion": DiffusionSettings}
# Settings a backend no longer has, dropped when read so that older files still load (their mattes are
# redone anyway: the job's identity hashes the current settings). The weight-free temporal module stopped
# voting and low-passing (issue 12), so its DCT low-pass settings went.
RETIRED_SETTINGS: dict[str, tuple[str, ...]] = {"propagate": ("lowpass_tau", "lowpass_strength")}
# Shared settings of version 2 that every backend has its own of since version 3: a file's value goes to each.
# The weight-free backend's working-resolution maps, already snapped to plate edges, lose J and gain flicker
# under the radius the diffusion backend's 64² attention maps need (issue 12).
SHARED_UNTIL_3 = ("refine_radius", "refine_eps")


@dataclass(frozen=True)
class Settings:
    """How to segment: the settings every backend reads, and each backend's own under its name.

    Defaults are the paper's values where the paper has one. A job's identity holds only the shared
    settings and its own backend's (`result_dict`), so tuning one backend never redoes the other's frames.
    """

    # Each number's valid range sits beside it (`ranged`: lo, hi, open ends); `check_ranges` enforces them.
    backend: str = ranged("propagate", choices=BACKEND_NAMES)  # weight-free path by default: runs without downloads
    temporal: bool = True  # SMITE's temporal module (voting + low-pass); off only for ablations
    vote_window: int = ranged(15, 1, 99, odd=True)  # SMITE: voting window W=15 frames centred on t (both backends)
    context: int = ranged(8, 0, 10_000)  # extra frames read on each side of a farm chunk for temporal context
    seed: int = ranged(0, 0, 2**32 - 1)  # every random choice derives from this (learning, noise, window draws)
    propagate: PropagateSettings = field(default_factory=PropagateSettings)  # the weight-free backend's own
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)  # the SMITE backend's own

    def __post_init__(self) -> None:
        check_ranges(self)
        for name, kind in BACKEND_SETTINGS.items():
            if not isinstance(getattr(self, name), kind):
                raise BadInputError(f"setting '{name}' must be {name} settings, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Settings":
        """Settings from JSON of this version or an older one (`upgrade_settings_dict`)."""
        data = upgrade_settings_dict(data)
        values = fields_from_dict(cls, data, "setting", skip=tuple(BACKEND_SETTINGS))
        for name, kind in BACKEND_SETTINGS.items():
            nested = data.get(name)
            if isinstance(nested, kind):
                values[name] = nested
            elif isinstance(nested, Mapping):
                values[name] = kind.from_dict(nested)
            elif nested is not None:
                raise BadInputError(f"setting '{name}' must be an object, got {nested!r}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {"version": SETTINGS_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def result_dict(self, backend: str) -> dict[str, Any]:
        """The settings that decide `backend`'s mattes: the shared ones that do, and its own."""
        return {k: v for k, v in self.to_dict().items()
                if k not in NON_RESULT_SETTINGS and (k not in BACKEND_SETTINGS or k == backend)}

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def own(self) -> PropagateSettings | DiffusionSettings:
        """The running backend's own settings (`backend` names the field)."""
        return getattr(self, self.backend)


SHARED_SETTINGS = tuple(f.name for f in dataclasses.fields(Settings) if f.name not in BACKEND_SETTINGS)


def setting_path(key: str) -> tuple[str | None, str]:
    """Where a setting named ``key`` lives: ``(backend, field)`` or ``(None, field)`` for a shared one.

    ``"propagate.carry_decay"`` names its backend; a bare name is shared when `Settings` has it,
    else the one backend's whose settings have it (``carry_decay`` -> propagate, ``window`` ->
    diffusion). A bare name two backends share is an error asking for the prefix; an unknown one is
    returned as shared, for validation to name.
    """
    section, dot, name = key.partition(".")
    if dot:
        if section not in BACKEND_SETTINGS:
            raise BadInputError(f"unknown setting '{key}': the part before the dot must be one of "
                                f"{', '.join(BACKEND_SETTINGS)}")
        return section, name
    if key in SHARED_SETTINGS or key in BACKEND_SETTINGS:
        return None, key
    owners = [b for b, kind in BACKEND_SETTINGS.items() if key in {f.name for f in dataclasses.fields(kind)}]
    if len(owners) > 1:
        raise BadInputError(f"setting '{key}' belongs to several backends; name one: "
                            + " or ".join(f"{b}.{key}" for b in owners))
    return (owners[0], key) if owners else (None, key)


def is_retired_setting(key: str) -> bool:
    """Whether ``key`` (a bare name or ``backend.name``) is one of `RETIRED_SETTINGS`."""
    section, dot, name = key.partition(".")
    if not dot:
        return any(key in names for names in RETIRED_SETTINGS.values())
    return name in RETIRED_SETTINGS.get(section, ())


def upgrade_settings_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """Settings JSON of any version -> this version's shape (nothing filled in: absent stays absent).

    Version 1 (and JSON without a version) kept the weight-free backend's settings at the top level
    and had two seeds, ``seed`` (segmenting) and ``diffusion.seed`` (learning). Top-level names of
    one backend's settings move under that backend (`setting_path`); the seeds become the one
    ``seed``: ``diffusion.seed`` alone is taken as it, both must agree (defaults do: 0), else the file
    is refused, since one of its results could not be reproduced. Versions 1 and 2 shared the plate
    refine (`SHARED_UNTIL_3`): a value they hold goes to every backend that has none of its own.
    Version 2 is otherwise taken as written, and version 3 entirely.
    """
    if not isinstance(data, Mapping):
        raise BadInputError(f"settings must be a JSON object, got {type(data).__name__}")
    version = data.get("version")
    if version is not None and (isinstance(version, bool) or version not in (1, 2, SETTINGS_VERSION)):
        raise BadInputError(f"settings version {version!r} is not one this SMITE reads (1 to {SETTINGS_VERSION})")
    out: dict[str, Any] = {k: (dict(v) if k in BACKEND_SETTINGS and isinstance(v, Mapping) else v)
                           for k, v in data.items()}
    for section, names in RETIRED_SETTINGS.items():
        for name in names:
            if version not in (2, SETTINGS_VERSION):
                out.pop(name, None)  # version 1: flat
            if isinstance(out.get(section), dict):
                out[section].pop(name, None)
    if version == SETTINGS_VERSION:
        return out
    for name in SHARED_UNTIL_3:
        if name in out:
            value = out.pop(name)
            for section in BACKEND_SETTINGS:
                _section(out, section).setdefault(name, value)
    if version == 2:
        out["version"] = SETTINGS_VERSION
        return out
    for key in list(out):
        section, name = setting_path(key) if key != "version" else (None, key)
        if section is not None:
            _section(out, section)[name] = out.pop(key)
    diffusion = out.get("diffusion")
    if isinstance(diffusion, dict) and "seed" in diffusion:
        learn_seed = diffusion.pop("seed")
        if "seed" not in out:
            out["seed"] = learn_seed
        elif out["seed"] != learn_seed:
            raise BadInputError(f"settings version 1 with two seeds (seed {out['seed']!r}, diffusion.seed "
                                f"{learn_seed!r}); version {SETTINGS_VERSION} has one: keep only 'seed'")
    out["version"] = SETTINGS_VERSION
    return out


def _section(out: dict[str, Any], section: str) -> dict[str, Any]:
    """`out`'s object of a backend's settings, made where absent (`upgrade_settings_dict`)."""
    nested = out.setdefault(section, {})
    if not isinstance(nested, dict):
        raise BadInputError(f"setting '{section}' must be an object, got {nested!r}")
    return nested


@dataclass(frozen=True)
class Reference:
    """One keyframe: a label map (0 = background, i = i-th part) or one soft mask per part."""

    frame: int
    labels: str | None = None
    masks: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ShotSpec:
    """What to segment. Paths are absolute (resolved against the manifest's folder)."""

    plate: str
    frames: tuple[int, ...]
    parts: tuple[str, ...]
    references: tuple[Reference, ...]
    colorspace: str = "sRGB - Texture"
    source: str = "<inline>"  # the manifest path, for error messages

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str, source: str = "<inline>") -> "ShotSpec":
        if not isinstance(data, Mapping):
            raise ManifestError(f"{source}: the manifest must be a JSON object")
        for key in ("plate", "frames", "parts", "references"):
            if key not in data:
                raise ManifestError(f"{source}: missing field '{key}'")
        allowed = {"plate", "frames", "parts", "references", "colorspace", "name", "notes"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ManifestError(f"{source}: unknown field '{unknown[0]}'")

        def resolve(path: Any, what: str) -> str:
            if not isinstance(path, str) or not path:
                raise ManifestError(f"{source}: {what} must be a non-empty path string")
            try:
                if b"\0" in os.fsencode(path):
                    raise ValueError
            except (UnicodeEncodeError, ValueError):
                raise ManifestError(f"{source}: {what} is not a valid path (NUL or lone surrogate)") from None
            return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))

        plate = resolve(data["plate"], "'plate'")
        if not isinstance(data["frames"], (str, int)):
            raise ManifestError(f"{source}: 'frames' must be a range string like \"1001-1100\"")
        try:
            frames = tuple(parse_frame_range(str(data["frames"])))
        except BadInputError as exc:
            raise ManifestError(f"{source}: {exc}") from None
        parts = data["parts"]
        if not isinstance(parts, list) or not parts:
            raise ManifestError(f"{source}: 'parts' must be a non-empty list of names")
        for name in parts:
            if not isinstance(name, str) or not PART_NAME.match(name):
                raise ManifestError(
                    f"{source}: part name {name!r} must start with a letter and hold only letters, digits, _"
                )
        if len(set(parts)) != len(parts):
            raise ManifestError(f"{source}: duplicate part names in 'parts'")
        refs_raw = data["references"]
        if not isinstance(refs_raw, list) or not refs_raw:
            raise ManifestError(f"{source}: 'references' must be a non-empty list")
        frame_set = set(frames)
        references = []
        seen_frames: set[int] = set()
        for i, ref in enumerate(refs_raw):
            where = f"{source}: references[{i}]"
            if not isinstance(ref, Mapping) or "frame" not in ref:
                raise ManifestError(f"{where}: missing field 'frame'")
            frame = ref["frame"]
            if isinstance(frame, bool) or not isinstance(frame, int):
                raise ManifestError(f"{where}: 'frame' must be an integer")
            if frame not in frame_set:
                raise ManifestError(
                    f"{where}: reference frame {frame} is outside the shot's frames {format_frame_range(list(frames))}"
                )
            if frame in seen_frames:
                raise ManifestError(f"{where}: frame {frame} is given twice")
            seen_frames.add(frame)
            has_labels, has_masks = "labels" in ref, "masks" in ref
            if has_labels == has_masks:
                raise ManifestError(f"{where}: give exactly one of 'labels' or 'masks'")
            if has_labels:
                references.append(Reference(frame=frame, labels=resolve(ref["labels"], f"{where}.labels")))
                continue
            masks = ref["masks"]
            if not isinstance(masks, Mapping) or not masks:
                raise ManifestError(f"{where}: 'masks' must map part names to mask files")
            for part in masks:
                if part not in parts:
                    raise ManifestError(f"{where}: unknown part '{part}' in 'masks' (parts: {', '.join(parts)})")
            resolved = {part: resolve(p, f"{where}.masks.{part}") for part, p in masks.items()}
            references.append(Reference(frame=frame, masks=resolved))
        colorspace = data.get("colorspace", "sRGB - Texture")
        if not isinstance(colorspace, str) or not colorspace:
            raise ManifestError(f"{source}: 'colorspace' must be a colourspace name")
        return cls(
            plate=plate,
            frames=frames,
            parts=tuple(parts),
            references=tuple(sorted(references, key=lambda r: r.frame)),
            colorspace=colorspace,
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        refs = []
        for ref in self.references:
            entry: dict[str, Any] = {"frame": ref.frame}
            if ref.labels is not None:
                entry["labels"] = ref.labels
            else:
                entry["masks"] = dict(ref.masks)
            refs.append(entry)
        return {
            "plate": self.plate,
            "frames": format_frame_range(list(self.frames)),
            "colorspace": self.colorspace,
            "parts": list(self.parts),
            "references": refs,
        }

    @property
    def reference_frames(self) -> tuple[int, ...]:
        return tuple(r.frame for r in self.references)


def read_json_file(path: str, what: str, error: type = BadInputError) -> Any:
    """The JSON in ``path``, read only from a regular file of at most `MAX_JSON_BYTES`.

    A FIFO or device (``/dev/zero``) would block or never end, and a deeply nested file would blow the
    parser's stack: each is one ``error`` line naming ``what`` and the path instead.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file")
    if info.st_size > MAX_JSON_BYTES:
        raise error(f"{what} {path} is {info.st_size} bytes; at most {MAX_JSON_BYTES} are read")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:
            raise error(f"{what} {path} is larger than {MAX_JSON_BYTES} bytes")
        return json.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"cannot read {what} {path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise error(f"{path}: invalid JSON: nested too deeply") from None


def load_shot(path: str) -> ShotSpec:
    """Read a shot manifest; relative paths resolve against the manifest's folder."""
    data = read_json_file(path, "shot manifest", ManifestError)
    return ShotSpec.from_dict(data, os.path.dirname(os.path.abspath(path)), source=path)
