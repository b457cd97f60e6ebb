"""Optional CoTracker3 point tracker (offline model) behind the `Tracker` interface.

Why optional: CoTracker's code and weights are CC BY-NC 4.0 (non-commercial use only), so SMITE never
installs or downloads them; a user who may use them points `--tracker-checkpoint` at what they already
have. Nothing here touches the network.

Where the model comes from (`load_predictor`):
- a checkpoint file (`scaled_offline.pth`), built with the installed `cotracker` package
  (`pip install git+https://github.com/facebookresearch/co-tracker`), or, without it, with the code of
  a torch.hub cache that sits next to the file (`<hub>/checkpoints/x.pth` beside `<hub>/facebookresearch_co-tracker_*`);
- a torch.hub folder: the cached repository itself (holds `hubconf.py`) or the hub folder above it; the
  model is built by `torch.hub.load(repo, "cotracker3_offline", source="local", pretrained=False)` and its
  weights read from the hub's `checkpoints/scaled_offline.pth` (what `pretrained=True` would have fetched).

Two differences from the public SMITE code, both on purpose: frames go in as 0-255 (CoTracker3 maps
`2 * (x / 255) - 1` inside; the public code feeds 0-1, which leaves the features nearly blank), and a
window is tracked in ONE call with every query and `backward_tracking=True`, instead of one call per
query frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError, MissingModelError
from .base import Tracks

HUB_ENTRY = "cotracker3_offline"
HUB_WEIGHTS = "scaled_offline.pth"  # the file name torch.hub gives the offline CoTracker3 weights
WINDOW_LEN = 60  # the offline CoTracker3 checkpoints are trained with a 60-frame window (hubconf)
LICENCE = "CC BY-NC 4.0, non-commercial use only"
INSTALL_HINT = (
    f"CoTracker ({LICENCE}) is optional: pip install git+https://github.com/facebookresearch/co-tracker "
    f"and pass --tracker-checkpoint {HUB_WEIGHTS} (or a torch.hub cache folder), or use --tracker flow"
)


def cotracker_available() -> bool:
    """True when the `cotracker` package imports (the doctor reports it)."""
    try:
        from cotracker.predictor import CoTrackerPredictor  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
    return True


def _package_predictor() -> torch.nn.Module:
    """A random-weight offline CoTracker3 predictor from the installed `cotracker` package."""
    try:
        from cotracker.predictor import CoTrackerPredictor
    except Exception as exc:  # noqa: BLE001
        raise MissingModelError(f"cannot import cotracker ({type(exc).__name__}: {exc}); {INSTALL_HINT}") from None
    return CoTrackerPredictor(checkpoint=None, window_len=WINDOW_LEN, v2=False)


def _hub_predictor(repo: Path) -> torch.nn.Module:
    """A random-weight predictor built by the hub entry of a cached co-tracker repository (no download)."""
    try:
        return torch.hub.load(str(repo), HUB_ENTRY, source="local", pretrained=False)
    except Exception as exc:  # noqa: BLE001
        raise MissingModelError(
            f"cannot build {HUB_ENTRY} from torch.hub folder {repo} ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
        ) from None


def _hub_repos(hub: Path) -> list[Path]:
    """Cached co-tracker repositories (folders with hubconf.py) directly inside a torch.hub folder."""
    if not hub.is_dir():
        return []
    return sorted(p for p in hub.glob("*co-tracker*") if (p / "hubconf.py").is_file())


def _hub_layout(folder: Path) -> tuple[Path, Path]:
    """(repository, weights file) of a torch.hub folder or of a cached repository inside one."""
    if (folder / "hubconf.py").is_file():
        repo, hubs = folder, [folder.parent, folder]
    else:
        repos = _hub_repos(folder)
        if not repos:
            raise MissingModelError(f"no co-tracker hubconf.py in torch.hub folder {folder}; {INSTALL_HINT}")
        repo, hubs = repos[-1], [folder]
    for hub in hubs:
        weights = hub / "checkpoints" / HUB_WEIGHTS
        if weights.is_file():
            return repo, weights
    raise MissingModelError(f"no checkpoints/{HUB_WEIGHTS} beside torch.hub repository {repo}; {INSTALL_HINT}")


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The CoTracker model's tensors from a .pth file: a plain state dict, `{"model": ...}`, or a
    predictor's state dict (keys prefixed `model.`). Loaded with weights_only: a checkpoint runs no code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable, truncated or not a torch file
        raise MissingModelError(f"cannot read CoTracker checkpoint {path} ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not state:
        raise MissingModelError(f"CoTracker checkpoint {path} holds no state dict")
    if all(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    return state


def load_predictor(checkpoint: str | Path, device: torch.device | str | None = None) -> torch.nn.Module:
    """An offline CoTracker3 predictor with the weights of `checkpoint` (file or torch.hub folder, see module doc).

    Raises MissingModelError, one line, when the path, the code or matching weights are missing.
    """
    if not str(checkpoint).strip():
        raise MissingModelError(f"tracker cotracker needs --tracker-checkpoint PATH; {INSTALL_HINT}")
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        repo, weights = _hub_layout(path)
        build: Callable[[], torch.nn.Module] = lambda: _hub_predictor(repo)
    elif path.is_file():
        weights = path
        repos = _hub_repos(path.parent.parent)  # <hub>/checkpoints/x.pth beside <hub>/facebookresearch_co-tracker_*
        if cotracker_available() or not repos:
            build = _package_predictor
        else:
            build = lambda: _hub_predictor(repos[-1])
    else:
        raise MissingModelError(f"CoTracker checkpoint {path} does not exist; {INSTALL_HINT}")
    state = read_state_dict(weights)
    predictor = build()
    try:
        predictor.model.load_state_dict(state)
    except (RuntimeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MissingModelError(f"{weights} is not an offline CoTracker3 checkpoint ({first})") from None
    predictor.eval()
    return predictor.to(device if device is not None else torch.get_default_device())


def _device_of(model: Any) -> torch.device:
    params = model.parameters() if isinstance(model, torch.nn.Module) else iter(())
    first = next(params, None)
    return first.device if first is not None else torch.get_default_device()


class CoTrackerTracker:
    """`Tracker` backed by an offline CoTracker3 predictor (see module doc; CC BY-NC 4.0).

    model: a ready predictor, called as `model(video (1, T, 3, H, W) 0-255, queries=(1, N, 3),
    backward_tracking=True) -> (points (1, T, N, 2), visible (1, T, N))`, e.g. from `load_predictor`
    or `torch.hub`. Runs on the model's device (the torch default for a model without parameters).
    """

    name = "cotracker"

    def __init__(self, model: Callable[..., tuple[Tensor, Tensor]]) -> None:
        self.model = model

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: torch.device | str | None = None) -> "CoTrackerTracker":
        return cls(load_predictor(checkpoint, device))

    def track(self, video: np.ndarray, queries: np.ndarray) -> Tracks:
        """Track queries (N, 3) rows (t, x, y) video px through video (T, H, W, 3) [0, 1]; see `Tracker`."""
        video = np.asarray(video)
        if video.ndim != 4 or video.shape[-1] != 3:
            raise BadInputError(f"video must be (T, H, W, 3), got shape {tuple(video.shape)}")
        queries = np.asarray(queries, np.float32).reshape(-1, 3)
        t_count, n = video.shape[0], queries.shape[0]
        qt = np.round(queries[:, 0]).astype(np.int64)
        if n and (qt.min() < 0 or qt.max() >= t_count):
            raise BadInputError(f"query frame outside 0..{t_count - 1}: {int(qt.min())}..{int(qt.max())}")
        if n == 0:
            return Tracks(torch.zeros(t_count, 0, 2), torch.zeros(t_count, 0, dtype=torch.bool))
        device = _device_of(self.model)
        frames = torch.from_numpy(np.ascontiguousarray(video, np.float32)).to(device)
        frames = (frames.permute(0, 3, 1, 2) * 255.0)[None]  # (1, T, 3, H, W), 0-255 as CoTracker3 expects
        q = torch.from_numpy(np.column_stack([qt.astype(np.float32), queries[:, 1:]]))
        with torch.no_grad():
            points, visible = self.model(frames, queries=q[None].to(device), backward_tracking=True)
        points = points.reshape(t_count, n, 2).float().cpu()
        visible = visible.reshape(t_count, n).cpu()
        visible = visible if visible.dtype == torch.bool else visible > 0.5
        # The contract: at its own frame a point sits exactly on its query and is visible.
        idx = torch.arange(n)
        points[torch.from_numpy(qt), idx] = torch.from_numpy(queries[:, 1:]).float()
        visible[torch.from_numpy(qt), idx] = True
        return Tracks(points.contiguous(), visible.contiguous())
