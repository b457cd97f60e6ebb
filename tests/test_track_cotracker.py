"""CoTracker3 tracker: the call contract on a fake predictor whose motion is known, the real CoTracker3
architecture with random weights (the `cotracker` copy in autosegmentor, a test-only install), checkpoint and
torch.hub loading, clear errors, and the wiring (settings, CLI, doctor)."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pytest
import torch

from smite.errors import BadInputError, MissingModelError
from smite.track import cotracker as ct
from smite.track.base import Tracker
from smite.track.cotracker import CoTrackerTracker, load_predictor

T, H, W, N = 8, 64, 64, 16


def _clip(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(video (T, H, W, 3) float32 [0, 1], queries (N, 3) rows (t, x, y) with t integral)."""
    rng = np.random.default_rng(seed)
    video = rng.random((T, H, W, 3), dtype=np.float32)
    queries = np.column_stack([rng.integers(0, T, N), rng.uniform(0, W - 1, N), rng.uniform(0, H - 1, N)])
    return video, queries.astype(np.float32)


class FakePredictor:
    """Predictor stand-in: every point moves +1 px in x per frame after its query frame (and -1 per frame
    before it); visibility comes back as a float score, 0.2 two or more frames from the query."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, video, queries=None, backward_tracking=False):
        self.calls.append({"video": video.clone(), "queries": queries.clone(), "backward": backward_tracking})
        steps = torch.arange(video.shape[1], dtype=torch.float32)[None, :, None] - queries[:, None, :, 0]
        points = queries[:, None, :, 1:].repeat(1, video.shape[1], 1, 1)
        points[..., 0] += steps
        return points, torch.where(steps.abs() < 2, 0.9, 0.2)


def test_fake_predictor_call_contract() -> None:
    video, queries = _clip()
    queries[:, 0] += 0.1  # rounds to the same frame
    fake = FakePredictor()
    tracks = CoTrackerTracker(fake).track(video, queries)
    assert isinstance(CoTrackerTracker(fake), Tracker)
    assert len(fake.calls) == 1  # one call with all queries, both directions
    call = fake.calls[0]
    assert call["backward"] is True
    assert tuple(call["video"].shape) == (1, T, 3, H, W) and call["video"].dtype == torch.float32
    expected = torch.from_numpy(video).permute(0, 3, 1, 2)[None] * 255.0
    torch.testing.assert_close(call["video"], expected)  # 0-255, not 0-1
    qt = np.round(queries[:, 0]).astype(int)
    np.testing.assert_array_equal(call["queries"][0, :, 0].numpy(), qt)
    assert tracks.points.shape == (T, N, 2) and tracks.points.dtype == torch.float32
    assert tracks.visible.shape == (T, N) and tracks.visible.dtype == torch.bool
    for i in range(N):
        for t in range(T):
            want = queries[i, 1:] + np.array([t - qt[i], 0.0], np.float32)
            np.testing.assert_allclose(tracks.points[t, i].numpy(), want, atol=1e-4)
            assert bool(tracks.visible[t, i]) == (abs(t - qt[i]) < 2)


def test_fake_predictor_edge_cases() -> None:
    video, queries = _clip()
    fake = FakePredictor()
    empty = CoTrackerTracker(fake).track(video, np.zeros((0, 3), np.float32))
    assert empty.points.shape == (T, 0, 2) and empty.visible.shape == (T, 0) and not fake.calls
    bad = queries.copy()
    bad[0, 0] = T
    with pytest.raises(BadInputError, match="query frame"):
        CoTrackerTracker(fake).track(video, bad)
    with pytest.raises(BadInputError, match="video"):
        CoTrackerTracker(fake).track(video[..., 0], queries)


def test_loading_errors_are_missing_model(tmp_path, monkeypatch) -> None:
    def check(checkpoint, *words: str) -> None:
        with pytest.raises(MissingModelError) as info:
            load_predictor(checkpoint)
        message = str(info.value)
        assert "\n" not in message
        for word in words:
            assert word in message

    check("", "--tracker-checkpoint", "CC BY-NC", "pip install")
    check(tmp_path / "nope.pth", "does not exist", "CC BY-NC")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    check(garbage, "cannot read", str(garbage))
    empty_hub = tmp_path / "hub"
    empty_hub.mkdir()
    check(empty_hub, "hubconf.py", "CC BY-NC")
    # cotracker not importable and no hub cache beside the file: how to install it, and the licence
    wrong = tmp_path / "wrong.pth"
    torch.save({"foo": torch.zeros(2)}, wrong)
    monkeypatch.setitem(sys.modules, "cotracker.predictor", None)
    assert not ct.cotracker_available()
    check(wrong, "cannot import cotracker", "pip install", "CC BY-NC")


# -- the real CoTracker3 architecture (random weights) --------------------------------------------------------

def _predictor(seed: int) -> torch.nn.Module:
    from cotracker.predictor import CoTrackerPredictor

    torch.manual_seed(seed)
    return CoTrackerPredictor(checkpoint=None, window_len=ct.WINDOW_LEN, v2=False)


@pytest.fixture(scope="module")
def real_predictor() -> torch.nn.Module:
    pytest.importorskip("cotracker.predictor", reason="test-only install: pip install --no-deps autosegmentor==3.0.1")
    predictor = _predictor(0)
    # Track at 64x64 instead of 384x512 to keep the test fast; the working size is not part of the weights.
    predictor.interp_shape = (H, W)
    predictor.model.model_resolution = (H, W)
    return predictor


def test_real_cotracker3_tracks_both_ways_in_one_call(real_predictor) -> None:
    seen: dict[str, list] = {"outer": [], "inner": []}
    hooks = [
        real_predictor.register_forward_pre_hook(lambda m, a, kw: seen["outer"].append(kw), with_kwargs=True),
        real_predictor.model.register_forward_pre_hook(
            lambda m, a, kw: seen["inner"].append(kw["video"].detach().clone()), with_kwargs=True),
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: on a busy 2-core box thread hand-offs cost more than they win
    try:
        video, queries = _clip()
        tracks = CoTrackerTracker(real_predictor).track(video, queries)
    finally:
        torch.set_num_threads(threads)
        for hook in hooks:
            hook.remove()
    assert len(seen["outer"]) == 1 and seen["outer"][0]["backward_tracking"] is True
    # The predictor runs the forward pass through `model.forward` (no hooks) and the backward pass through
    # `model(...)`: the one video seen here is the time-reversed clip, in 0-255 (the 64x64 resize is the identity).
    assert len(seen["inner"]) == 1
    expected = torch.from_numpy(video).permute(0, 3, 1, 2)[None] * 255.0
    torch.testing.assert_close(seen["inner"][0], expected.flip(1), atol=1e-3, rtol=1e-5)
    assert tracks.points.shape == (T, N, 2) and tracks.points.dtype == torch.float32
    assert tracks.visible.shape == (T, N) and tracks.visible.dtype == torch.bool
    assert torch.isfinite(tracks.points).all()
    qt = torch.from_numpy(queries[:, 0].astype(np.int64))
    idx = torch.arange(N)
    torch.testing.assert_close(tracks.points[qt, idx], torch.from_numpy(queries[:, 1:]), atol=0, rtol=0)
    assert tracks.visible[qt, idx].all()


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], atol=0, rtol=0)


def test_checkpoint_round_trip(tmp_path, real_predictor) -> None:
    source = _predictor(1)
    plain, wrapped = tmp_path / "plain.pth", tmp_path / "wrapped.pth"
    torch.save(source.model.state_dict(), plain)
    torch.save({"model": source.model.state_dict()}, wrapped)
    for path in (plain, wrapped):
        tracker = CoTrackerTracker.from_checkpoint(str(path))
        assert isinstance(tracker, Tracker)
        _assert_same_weights(tracker.model.model, source.model)
        assert not tracker.model.training
    differs = any(not torch.equal(p, q) for p, q in zip(real_predictor.model.parameters(), source.model.parameters()))
    assert differs  # the comparison above can fail: another seed gives other weights
    with pytest.raises(MissingModelError, match="not an offline CoTracker3 checkpoint"):
        bad = tmp_path / "bad.pth"
        torch.save({"foo": torch.zeros(2)}, bad)
        load_predictor(bad)


HUBCONF = '''
def cotracker3_offline(*, pretrained=True, **kwargs):
    assert not pretrained, "SMITE must never let torch.hub download"
    from cotracker.predictor import CoTrackerPredictor
    return CoTrackerPredictor(checkpoint=None, window_len=60, v2=False)
'''


def test_torch_hub_cache_loading(tmp_path, real_predictor, monkeypatch) -> None:
    hub = tmp_path / "hub"
    repo = hub / "facebookresearch_co-tracker_main"
    repo.mkdir(parents=True)
    (repo / "hubconf.py").write_text(HUBCONF)
    (hub / "checkpoints").mkdir()
    source = _predictor(2)
    weights = hub / "checkpoints" / ct.HUB_WEIGHTS
    torch.save(source.model.state_dict(), weights)
    for path in (hub, repo):
        _assert_same_weights(load_predictor(path).model, source.model)
    monkeypatch.setattr(ct, "cotracker_available", lambda: False)  # a .pth beside a hub cache uses the hub's code
    calls = []
    real_hub = ct._hub_predictor
    monkeypatch.setattr(ct, "_hub_predictor", lambda r: calls.append(r) or real_hub(r))
    _assert_same_weights(load_predictor(weights).model, source.model)
    assert calls == [repo]
    (hub / "checkpoints" / ct.HUB_WEIGHTS).unlink()
    with pytest.raises(MissingModelError, match=ct.HUB_WEIGHTS):
        load_predictor(hub)


# -- wiring ----------------------------------------------------------------------------------------------------

def test_settings_and_cli_options() -> None:
    from smite.cli.segment import add_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--shot", "s.json", "--out", "o.####.exr", "--backend", "diffusion",
                              "--tracker", "cotracker", "--tracker-checkpoint", "/models/scaled_offline.pth"])
    settings = settings_from_args(args)
    assert settings.diffusion.tracker == "cotracker"
    assert settings.diffusion.tracker_checkpoint == "/models/scaled_offline.pth"
    defaults = settings_from_args(parser.parse_args(["--shot", "s.json", "--out", "o.####.exr"]))
    assert defaults.diffusion.tracker == "flow" and defaults.diffusion.tracker_checkpoint == ""
    with pytest.raises(SystemExit):
        parser.parse_args(["--shot", "s.json", "--out", "o", "--tracker", "raft"])


def test_make_tracker(tmp_path) -> None:
    pytest.importorskip("diffusers")
    from smite.backends.diffusion import make_tracker
    from smite.model.settings import DiffusionSettings
    from smite.track.flow import FlowTracker

    assert isinstance(make_tracker(DiffusionSettings(), 512), FlowTracker)
    with pytest.raises(MissingModelError, match="--tracker-checkpoint"):
        make_tracker(DiffusionSettings(tracker="cotracker"), 512)
    pytest.importorskip("cotracker.predictor")
    source = _predictor(3)
    path = tmp_path / "scaled_offline.pth"
    torch.save(source.model.state_dict(), path)
    tracker = make_tracker(DiffusionSettings(tracker="cotracker", tracker_checkpoint=str(path)), 512, "cpu")
    assert isinstance(tracker, CoTrackerTracker)
    _assert_same_weights(tracker.model.model, source.model)


def test_doctor_reports_cotracker_and_licence() -> None:
    from smite.cli.doctor import report

    row = dict(report())["tracker cotracker"]
    assert "CC BY-NC" in row
    assert ("not importable" in row) != ct.cotracker_available()
