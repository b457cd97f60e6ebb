"""Weight-free backend: carry keyframe maps along optical flow, then SMITE's temporal module.

Why: it runs anywhere without downloads, gives artists a usable matte today, and is the baseline
the diffusion backend is measured against. Steps, at a working resolution (long side
`work_max_side`):

1. dense flow both ways between consecutive frames (`track.flow`);
2. from each reference, a map of coordinates into that reference is carried forward and backward
   frame by frame (backward warping), with a confidence that decays with distance and where the
   flow fails its forward-backward test; each frame reads the reference's sharp maps through it
   (no cumulative blur), lets the reference's colour model decide where the carry is unsure
   (`method.appearance`), and is snapped to its own plate edges (guided filter);
3. the carries from the nearest references on both sides are fused by confidence;
4. temporal module (`settings.temporal`): SMITE's voting over a 15-frame window along dense tracks
   (majority label, detail kept), then the DCT low-pass consistency step (`method.lowpass`): the
   voted maps' low spatial frequencies are pulled toward the motion-compensated mean of all
   samples along the tracks, which is smooth in time, so coarse shape stops flickering.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

from ..method.appearance import ColourModel, reweight
from ..method.lowpass import lowpass_consistency
from ..method.voting import vote, window_frames
from ..refine import refine_to_plate
from ..track.flow import DenseFlows, chain, compute_flows, working_size
from .base import BackendBase, VideoState

EPS = 1e-6


def _warp(maps: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp `maps` (h, w, C) by `flow` (h, w, 2): out(x) = maps(x + flow(x))."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = cv2.remap(maps, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(h, w, -1)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run small tensor ops single-threaded: on a busy 2-core CPU torch's thread pool costs ~5x."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _normalise(probs: np.ndarray) -> np.ndarray:
    """Clip `(h, w, K)` maps to [0, 1] and make classes sum to one."""
    probs = np.clip(probs, 0.0, 1.0)
    return probs / np.maximum(probs.sum(axis=-1, keepdims=True), EPS)


class PropagateBackend(BackendBase):
    """Keyframe propagation along optical flow plus SMITE's temporal module; no weights."""

    name = "propagate"

    # -- predictor API (init_state, add_reference from BackendBase) ----------------------------
    def references_changed(self, state: VideoState) -> None:
        state.cache.pop("fused", None)  # flows stay valid; the carried maps do not

    def propagate(self, state: VideoState, frames: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        wanted = list(state.frame_numbers if frames is None else frames)
        work, flows = self._working_frames(state)
        fused = self._fused(state, work, flows)  # (T, h, w, K)
        index = {f: i for i, f in enumerate(state.frame_numbers)}
        for frame in wanted:
            t = index[frame]
            probs = fused[t]
            if self.settings.temporal:
                probs = self._temporal(fused, flows, t)
            yield frame, np.ascontiguousarray(probs.transpose(2, 0, 1))

    # -- steps ---------------------------------------------------------------------------------
    def _working_frames(self, state: VideoState) -> tuple[np.ndarray, DenseFlows]:
        if "work" not in state.cache:
            h, w = working_size(*state.source.size, self.settings.propagate.work_max_side)
            work = np.stack(
                [cv2.resize(state.source.get(f), (w, h), interpolation=cv2.INTER_AREA) for f in state.frame_numbers]
            )
            state.cache["work"] = work
            state.cache["flows"] = compute_flows(
                work, max_side=self.settings.propagate.work_max_side, preset=self.settings.propagate.flow_preset,
                progress=lambda done, total: self.report("flow", done, total, "optical flow"))
        return state.cache["work"], state.cache["flows"]  # type: ignore[return-value]

    def _snap(self, probs: np.ndarray, guide: np.ndarray) -> np.ndarray:
        """Re-align carried soft maps `(h, w, K)` with the edges of the frame they now sit on."""
        s = self.settings.propagate
        snapped = refine_to_plate(probs.transpose(2, 0, 1), guide, radius=s.snap_radius, eps=s.snap_eps, subsample=1)
        return snapped.transpose(1, 2, 0)

    def _carry(self, work: np.ndarray, flows: DenseFlows, refs: dict[int, np.ndarray],
               models: dict[int, ColourModel], order: list[int], step: int):
        """Carry reference maps through frames in `order`; per frame (maps (h,w,K), confidence (h,w)) or None.

        What travels from frame to frame is a map of *coordinates into the reference frame* (plus a
        confidence), not the class maps themselves: re-sampling coordinates, which vary smoothly, does
        not blur, so every frame reads the reference's sharp maps once and small parts survive long
        carries. Each carried frame is then snapped to its own plate edges.
        """
        s = self.settings.propagate
        h, w = flows.size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        identity = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # (h, w, [x_ref, y_ref, confidence])
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(work)
        coords = ref = ref_frame = None
        for done, t in enumerate(order, start=1):
            self.report("carry", done, len(order), "carrying keyframes " + ("forward" if step == 1 else "backward"))
            if t in refs:
                coords, ref, ref_frame = identity.copy(), refs[t], t
            elif coords is not None:
                prev = t - step
                # flow from t back to the frame we carry from: backward[t-1] when moving forward in time
                flow, ok = (flows.backward[prev], flows.bwd_ok[prev]) if step == 1 else (flows.forward[t], flows.fwd_ok[t])
                coords = _warp(coords, flow)
                coords[..., 2] *= s.carry_decay * np.where(ok, 1.0, s.occlusion_decay).astype(np.float32)
            if coords is None:
                continue
            maps = cv2.remap(ref, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            maps = maps.reshape(h, w, -1)
            conf = coords[..., 2].copy()
            if t not in refs:
                maps = self._with_appearance(maps, conf, models[ref_frame], work[t])
                maps = self._snap(maps, work[t])
            out[t] = (maps, conf)
        return out

    def _with_appearance(self, maps: np.ndarray, conf: np.ndarray, model: ColourModel, rgb: np.ndarray) -> np.ndarray:
        """Where the carry is unsure, let the reference's colours decide among nearby labels.

        The prior is the carried map where confidence is high and a spatially blurred version of it
        where confidence is low (a lost pixel is likely one of its neighbours' labels, not any label).
        """
        s = self.settings.propagate
        if s.appearance_weight <= 0:
            return maps
        h, w = conf.shape
        size = max(3, int(round(s.uncertain_blur * max(h, w))) | 1)
        blurred = cv2.blur(maps, (size, size)).reshape(maps.shape)
        c = conf[..., None]
        prior = c * maps + (1.0 - c) * blurred
        return reweight(prior, model.likelihood(rgb), s.appearance_weight)

    def _fused(self, state: VideoState, work: np.ndarray, flows: DenseFlows) -> np.ndarray:
        if "fused" in state.cache:
            return state.cache["fused"]  # type: ignore[return-value]
        h, w = flows.size
        index = {f: i for i, f in enumerate(state.frame_numbers)}
        refs = {
            index[f]: _normalise(cv2.resize(p.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1))
            for f, p in state.references.items()
        }
        if not refs:
            raise ValueError("propagate needs at least one reference among the loaded frames")
        n = len(work)
        models = {r: ColourModel.fit([work[r]], [p], levels=self.settings.propagate.appearance_levels) for r, p in refs.items()}
        fwd = self._carry(work, flows, refs, models, list(range(n)), 1)
        bwd = self._carry(work, flows, refs, models, list(range(n - 1, -1, -1)), -1)
        k = next(iter(refs.values())).shape[-1]
        fused = np.zeros((n, h, w, k), np.float32)
        for t in range(n):
            total = np.zeros((h, w, 1), np.float32)
            for carried in (fwd[t], bwd[t]):
                if carried is not None:
                    maps, conf = carried
                    weight = conf[..., None] + EPS
                    fused[t] += weight * maps
                    total += weight
            fused[t] /= total
        state.cache["fused"] = fused
        return fused

    def _temporal(self, fused: np.ndarray, flows: DenseFlows, t: int) -> np.ndarray:
        """SMITE's temporal module for frame t: vote along dense tracks, then low-pass consistency.

        Votes are taken on every `vote_stride`-th working pixel and applied as a correction
        (voted - fused) upsampled to the working grid, so the frame keeps its own fine detail while
        its labels follow the majority along the tracks; that makes voting 4x cheaper at stride 2.
        """
        s = self.settings.propagate
        n, h, w, k = fused.shape
        step = s.vote_stride
        window = window_frames(t, n, self.settings.vote_window)
        ys, xs = np.mgrid[0:h:step, 0:w:step].astype(np.float32)
        gh, gw = ys.shape
        grid = np.stack([xs.ravel(), ys.ravel()], axis=-1)
        pts, vis = chain(flows, grid, t, window.start, window.stop - 1)
        # Sampling with cv2.remap: the same bilinear read as voting.sample_along_tracks, several
        # times faster on CPU; the voting rule itself is the shared one.
        samples = np.empty((len(window), k, gh * gw), np.float32)
        for i, frame in enumerate(window):
            px = pts[i].reshape(gh, gw, 2)
            samples[i] = cv2.remap(fused[frame], px[..., 0], px[..., 1], cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE).reshape(gh * gw, k).T
        with _torch_threads(1):
            voted = vote(torch.from_numpy(samples), torch.from_numpy(vis)).numpy().T.reshape(gh, gw, k)
        # The motion-compensated mean of every visible sample: smooth in time, the low-pass target.
        weight = vis.astype(np.float32)[:, None, :]
        mean = ((samples * weight).sum(0) / np.maximum(weight.sum(0), 1.0)).T.reshape(gh, gw, k)
        current = fused[t]
        if step > 1:  # apply the coarse results as corrections to the frame's own full-resolution maps
            coarse = current[::step, ::step]
            voted, mean = (current + cv2.resize(x - coarse, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, k)
                           for x in (voted, mean))
        if s.lowpass_strength > 0:
            with _torch_threads(1):
                v = torch.from_numpy(np.ascontiguousarray(voted.transpose(2, 0, 1)))[:, None]
                m = torch.from_numpy(np.ascontiguousarray(mean.transpose(2, 0, 1)))[:, None]
                voted = lowpass_consistency(v, m, s.lowpass_tau, s.lowpass_strength)[:, 0].numpy().transpose(1, 2, 0)
        return _normalise(voted)
