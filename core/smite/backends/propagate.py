"""Weight-free backend: carry keyframe maps along optical flow, then SMITE's temporal module.

Why: it runs anywhere without downloads, gives artists a usable matte today, and is the baseline
the diffusion backend is measured against. Steps, at a working resolution (long side
`work_max_side`):

1. dense flow both ways between consecutive frames (`track.flow`);
2. from each reference, a map of coordinates into that reference is carried forward and backward
   frame by frame (backward warping), with a confidence that decays with distance and where the
   flow fails its forward-backward test; at every step each pixel keeps whichever of its carried
   coordinates and a direct DIS match to the keyframe (one that passes its forward-backward test)
   reads colours closer to its own (re-matching: the chained flow drifts and loses fast or occluded
   parts for good, a direct match does not accumulate drift and finds them again); each frame reads
   the reference's sharp maps through it (no cumulative blur), lets the reference's colour model
   decide where the carry is unsure, as far as the keyframe's colours tell its parts apart
   (`method.appearance`), lets pixels that move like the background drop their parts where the carry
   is unsure (`method.motion`: the trail a subject leaves on the ground it walks off), and is snapped
   to its own plate edges (guided filter) as far as the carry is unsure;
3. the carries from the nearest references on both sides are fused by confidence (`fuse_power`), each
   side's scaled by how well its coordinates still read what the frame shows (`fuse_match_sigma`);
4. temporal module (`settings.temporal`): over a 15-frame window along dense flow tracks, the
   weighted median of the neighbours' soft maps, weighted by how far each track is to be trusted (its flow
   tests and its colour agreement, `method.trackfilter`). It replaced SMITE's majority vote plus
   DCT low-pass here: what flickered was the edges, where hard track visibility left pixels with
   only their own frame, and the vote cost J on fast small subjects (issue 12).

Streaming (memory set by the windows, not the shot): one sweep forward in time computes working
frames, flows and the forward carry; one sweep backward carries the other way and fuses; a last
sweep forward runs the temporal module over a sliding window. What one sweep leaves for the next
(working frames, flows, forward maps, fused maps, and every `CHECKPOINT`-th carried coordinate
map) goes to the scratch cache (`smite.scratch`) under content keys: a frame's key is its number
and its plate file's size and mtime, a carry's key chains the keys of every frame since its
keyframe (and the keyframe's maps), so an entry is reused only for the very same inputs. A resumed
run or another farm chunk of the same job reuses fused maps, flows and working frames outright and
restarts a carry from the nearest cached checkpoint instead of from the keyframe.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from ..method.appearance import ColourModel, reweight
from ..method.motion import MotionCue, with_motion
from ..method.part_shift import PartMoves, move_parts
from ..method.trackfilter import colour_weights, track_mean, track_median
from ..method.voting import window_frames
from ..refine import refine_to_plate
from ..scratch import Scratch
from ..track.flow import StepFlows, pixel_grid, read_at, warp_back, weighted_chain
from ..track.stream import ClipStream, Ring, content_key
from .base import BackendBase, VideoState

EPS = 1e-6
# Carried coordinates are cached every CHECKPOINT-th frame from their keyframe: a later chunk of the
# same job restarts its carry from the nearest one instead of from the keyframe.
CHECKPOINT = 8


def _normalise(probs: np.ndarray) -> np.ndarray:
    """Clip `(h, w, K)` maps to [0, 1] and make classes sum to one."""
    probs = np.clip(probs, 0.0, 1.0)
    return probs / np.maximum(probs.sum(axis=-1, keepdims=True), EPS)


class _Carry:
    """Where one direction's carry stands for every frame: its keyframe, distance and content key.

    ref[i]: index of the keyframe frame i's carry comes from (None: no keyframe on that side);
    dist[i]: frames from it; key[i]: hash chaining the keyframe's maps and every frame key since.
    """

    def __init__(self, direction: int, n: int, refs: dict[int, np.ndarray], frame_keys: list[str]) -> None:
        self.direction = direction
        self.ref: list[int | None] = [None] * n
        self.dist = [0] * n
        self.key: list[str | None] = [None] * n
        order = range(n) if direction == 1 else range(n - 1, -1, -1)
        ref, key, dist = None, None, 0
        for i in order:
            if i in refs:
                ref, dist = i, 0
                key = content_key("keyframe", direction, frame_keys[i], _digest(refs[i]))
            elif ref is not None:
                dist += 1
                key = content_key(key, frame_keys[i])
            self.ref[i], self.dist[i], self.key[i] = ref, dist, key

    def checkpoint(self, i: int) -> bool:
        return self.dist[i] > 0 and self.dist[i] % CHECKPOINT == 0


def _digest(array: np.ndarray) -> str:
    return content_key(array.shape, array.dtype, hashlib.blake2b(np.ascontiguousarray(array).tobytes(),
                                                                 digest_size=12).hexdigest())


def _fuse(carried: Iterable[tuple[np.ndarray, np.ndarray] | None], shape: tuple[int, ...],
          power: float) -> np.ndarray:
    """Mean `(h, w, K)` of the (maps (h, w, K), conf (h, w)) carries present, weighted by conf**power."""
    fused = np.zeros(shape, np.float32)
    total = np.zeros((*shape[:2], 1), np.float32)
    for item in carried:
        if item is not None:
            maps, conf = item
            weight = np.power(conf, np.float32(power))[..., None] + EPS
            fused += weight * maps
            total += weight
    fused /= total
    return fused


class PropagateBackend(BackendBase):
    """Keyframe propagation along optical flow plus SMITE's temporal module; no weights."""

    name = "propagate"

    # -- predictor API (init_state, add_reference from BackendBase) ----------------------------
    def propagate(self, state: VideoState, frames: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Three sweeps (module doc); memory is the rings', frames come out in the order asked."""
        shared, s = self.settings, self.settings.propagate
        wanted = list(state.frame_numbers if frames is None else frames)
        scratch = state.scratch or Scratch.temporary()
        clip = ClipStream(state.source, s.work_max_side, s.flow_preset, scratch, ring=shared.vote_window + 2,
                          report=self.report)
        try:
            index = {f: i for i, f in enumerate(state.frame_numbers)}
            targets = [index[f] for f in wanted]
            # 1. which fused maps the output needs: the wanted frames and their voting windows
            needed: set[int] = set()
            for t in targets:
                needed.update(window_frames(t, clip.num_frames, shared.vote_window) if shared.temporal else [t])
            run = _Sweeps(self, state, clip)
            # 2.-3. forward and backward carries, fused, for the maps not in the scratch cache yet
            run.make_fused(sorted(needed))
            # 4. temporal module over a sliding window, frame by frame
            for frame, t in zip(wanted, targets):
                probs = run.temporal(t) if shared.temporal else run.fused(t)
                yield frame, np.ascontiguousarray(probs.transpose(2, 0, 1))
        finally:
            clip.close()
            if state.scratch is None:
                scratch.remove()

    # -- per-frame steps -------------------------------------------------------------------------
    def snap(self, probs: np.ndarray, guide: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """Re-align carried soft maps `(h, w, K)` with the edges of the frame they now sit on, where the carry is unsure.

        conf: the carry's confidence `(h, w)`. The guided filter moves drifted edges back onto the
        plate's, and also thins what is narrower than its window (a horse's lower legs, a chair's
        wheels) even where the carry put it right; the carried map keeps weight conf**`snap_trust_power`.
        """
        s = self.settings.propagate
        snapped = refine_to_plate(probs.transpose(2, 0, 1), guide, radius=s.snap_radius, eps=s.snap_eps, subsample=1)
        snapped = snapped.transpose(1, 2, 0)
        if s.snap_trust_power <= 0:
            return snapped
        keep = np.power(conf, np.float32(s.snap_trust_power))[..., None]
        return keep * probs + (1.0 - keep) * snapped

    def with_appearance(self, maps: np.ndarray, conf: np.ndarray, model: ColourModel, rgb: np.ndarray) -> np.ndarray:
        """Where the carry is unsure, let the reference's colours decide among nearby labels.

        The prior is the carried map where confidence is high and a spatially blurred version of it
        where confidence is low (a lost pixel is likely one of its neighbours' labels, not any label).
        The colour posterior then replaces the carried map only as far as colours are to be trusted:
        the carry keeps weight conf * (1 - s)**`separability_power`, s the model's separability on its
        keyframes (`method.appearance`). A car on asphalt (s 0.45) keeps its carried shape where that
        is sure instead of trading it for the asphalt's look-alike colours; a dog on grass (s 0.70) is
        left to its colours almost as before. Where the carry is unsure, colours that barely tell the
        parts apart are no better guide than the carry: the colour side's weight is scaled by
        min(1, s / `separability_full`). A beige cap among beige planks (s 0.01) otherwise lost its
        carried shape to the blurred prior as soon as the flow failed its tests on it.
        """
        s = self.settings.propagate
        if s.appearance_weight <= 0:
            return maps
        h, w = conf.shape
        size = max(3, int(round(s.uncertain_blur * max(h, w))) | 1)
        blurred = cv2.blur(maps, (size, size)).reshape(maps.shape)
        c = conf[..., None]
        prior = c * maps + (1.0 - c) * blurred
        posterior = reweight(prior, model.likelihood(rgb), s.appearance_weight)
        keep = c * np.float32((1.0 - model.separability) ** s.separability_power)
        colour = (1.0 - keep) * np.float32(_trust(model.separability, s.separability_full))
        return (1.0 - colour) * maps + colour * posterior

    def with_motion(self, maps: np.ndarray, conf: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """Where the carry is unsure, let pixels that move like the background say so (`method.motion`).

        packed: the flow `(h, w, [fx, fy, ok])` of the step the carry took into this frame. What it
        removes is the trail a moving subject leaves on the ground it walks off, where the colour model
        is no help when the ground looks like the subject (white bollards behind a white car).
        """
        s = self.settings.propagate
        if s.motion_weight <= 0:
            return maps
        cue = MotionCue.fit(packed, maps, conf)
        if cue is None:
            return maps
        return with_motion(maps, conf, cue, s.motion_weight, s.motion_trust_power)

    def move_parts(self, coords: np.ndarray, ref_maps: np.ndarray, backward: np.ndarray, forward: np.ndarray,
                   prev_rgb: np.ndarray, rgb: np.ndarray) -> PartMoves:
        """The translations of the small parts the step's flow loses (`method.part_shift`).

        coords: the carry's coordinates in the frame the step comes from (prev_rgb), reading the
        keyframe's maps `ref_maps`; backward: the step's flow from this frame (rgb) to that one,
        forward: the other way. The step then takes `PartMoves.flow`, fills the trail and holds
        re-matching off around the moved parts (`_Sweeps._step`).
        """
        s = self.settings.propagate
        if s.part_shift_ratio <= 0:
            return PartMoves(backward, np.zeros(backward.shape[:2], bool))
        maps = read_at(ref_maps, coords)
        return move_parts(maps, backward, forward, prev_rgb, rgb, s.part_shift_ratio, s.part_shift_max_size,
                          s.part_shift_min)

    def fusion_confidence(self, conf: np.ndarray, rgb: np.ndarray, ref_rgb: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """The carry's confidence `(h, w)` for fusion: scaled by exp(-e / `fuse_match_sigma`), e the patch error.

        e: the colour difference between this frame and its keyframe read through the carried coordinates
        (`_patch_error`, over the re-matching patch). Of two carries the one whose coordinates still read what
        the frame shows weighs most; the flow's own tests cannot see a carry that drifted smoothly.
        """
        s = self.settings.propagate
        if s.fuse_match_sigma <= 0:
            return conf
        error = _patch_error(ref_rgb, rgb, np.ascontiguousarray(coords[..., :2]), max(1, s.rematch_radius))
        return conf * np.exp(-error / np.float32(s.fuse_match_sigma))

    def step(self, coords: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """Carried coordinates `(h, w, 3)` one frame on, along packed flow `(h, w, [fx, fy, ok])`."""
        s = self.settings.propagate
        coords = warp_back(coords, packed)
        ok = packed[..., 2] >= 0.5
        coords[..., 2] *= s.carry_decay * np.where(ok, 1.0, s.occlusion_decay).astype(np.float32)
        return coords

    def rematch(self, coords: np.ndarray, rgb: np.ndarray, ref_rgb: np.ndarray, direct: np.ndarray) -> np.ndarray:
        """Carried coordinates `(h, w, 3)` after re-matching against the keyframe (module doc, step 2).

        rgb: this frame, ref_rgb: the keyframe, both `(h, w, 3)`; direct: `(h, w, [fx, fy, ok])` flow
        from this frame straight to the keyframe, ok where it passes the forward-backward test
        (`ClipStream.match`). A pixel takes its direct match where that passes and reads the keyframe's
        colours closer to its own over a patch, and its confidence is raised to `rematch_confidence`:
        the match is fresh, but it spans many frames in one DIS call. A match that fails the test is
        not a candidate: the ground a subject walked off since the keyframe has no match there and DIS
        gives it the subject that covered it, whose colours can be close enough (a cream dog on dry
        grass) to win the patch test and leave a trail of part behind the subject. Then each pixel
        tries the coordinates of its neighbours `rematch_spread` px away, moved by the same offset, and
        keeps the best (PatchMatch's propagation step): DIS smooths flow across a moving part's edge, so an
        edge pixel often reads background while its neighbour inside the part moves right.
        """
        s = self.settings.propagate
        if s.rematch_radius <= 0:
            return coords
        xs, ys = pixel_grid(*coords.shape[:2])
        matched = np.stack([xs + direct[..., 0], ys + direct[..., 1]], axis=-1)
        r = s.rematch_radius
        better = _patch_error(ref_rgb, rgb, matched, r) < _patch_error(ref_rgb, rgb, coords[..., :2], r)
        better &= direct[..., 2] >= 0.5
        out = coords.copy()
        np.copyto(out[..., :2], matched, where=better[..., None])
        np.copyto(out[..., 2], np.maximum(coords[..., 2], s.rematch_confidence), where=better)
        k = s.rematch_spread
        if k > 0:
            best = _patch_error(ref_rgb, rgb, out[..., :2], r)
            for dy, dx in ((k, 0), (-k, 0), (0, k), (0, -k)):
                xy = _shifted(out[..., :2], dy, dx)
                xy[..., 0] += dx
                xy[..., 1] += dy
                error = _patch_error(ref_rgb, rgb, xy, r)
                take = error < best
                np.copyto(out[..., :2], xy, where=take[..., None])
                np.copyto(best, error, where=take)
        return out

    def temporal(self, fused_at, work_at, flows: StepFlows, n: int, t: int) -> np.ndarray:
        """The temporal module for frame t: a reliability-weighted median of the soft maps along tracks.

        fused_at(i) -> frame i's fused maps (h, w, K); work_at(i) -> its working frame (h, w, 3);
        flows: the clip's steps; n frames. Every `vote_stride`-th working pixel is followed through
        the `vote_window` frames (`weighted_chain`); every pixel moves along its block's track (the
        tracks' displacements interpolated bilinearly), reads each neighbour's maps and colour where
        it lands, and is weighted by its block's flow reliability and its own colour agreement
        (`method.trackfilter`). The part maps take the samples' weighted median, blended with their
        weighted mean by `temporal_median`; the background is what the parts leave.
        """
        s = self.settings.propagate
        h, w, k = fused_at(t).shape
        step = s.vote_stride
        window = window_frames(t, n, self.settings.vote_window)
        ys, xs = np.mgrid[0:h:step, 0:w:step].astype(np.float32)
        gh, gw = ys.shape
        grid = np.stack([xs, ys], axis=-1)
        pts, weights = weighted_chain(flows, grid.reshape(-1, 2), t, window.start, window.stop - 1,
                                      s.track_fail_weight)
        px_x, px_y = pixel_grid(h, w)
        block_y, block_x = np.minimum(np.arange(h) // step, gh - 1), np.minimum(np.arange(w) // step, gw - 1)
        own_rgb = work_at(t).reshape(h * w, -1)
        samples = np.empty((len(window), k, h * w), np.float32)
        pixel_weights = np.empty((len(window), h * w), np.float32)
        for i, frame in enumerate(window):
            moved = cv2.resize(pts[i].reshape(gh, gw, 2) - grid, (w, h), interpolation=cv2.INTER_LINEAR)
            at = np.stack([px_x + moved[..., 0], px_y + moved[..., 1]], axis=-1)
            samples[i] = read_at(fused_at(frame), at).reshape(h * w, k).T
            pixel_weights[i] = weights[i].reshape(gh, gw)[block_y][:, block_x].ravel()
            if frame != t:
                pixel_weights[i] *= colour_weights(read_at(work_at(frame), at).reshape(h * w, -1), own_rgb,
                                                   s.colour_sigma)
        parts, mix = samples[:, 1:], np.float32(s.temporal_median)
        out = np.zeros((k, h * w), np.float32)
        if mix < 1:
            out[1:] += (1 - mix) * track_mean(parts, pixel_weights)
        if mix > 0:
            out[1:] += mix * track_median(parts, pixel_weights)
        out[0] = 1.0 - out[1:].sum(0)
        return _normalise(out.T.reshape(h, w, k))


class _Sweeps:
    """One propagate call's carries and fused maps over a `ClipStream` (see the module doc)."""

    def __init__(self, backend: PropagateBackend, state: VideoState, clip: ClipStream) -> None:
        self.backend, self.clip = backend, clip
        h, w = clip.size
        index = {f: i for i, f in enumerate(state.frame_numbers)}
        self.refs = {
            index[f]: _normalise(cv2.resize(p.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1))
            for f, p in state.references.items()
        }
        if not self.refs:
            raise ValueError("propagate needs at least one reference among the loaded frames")
        self.classes = next(iter(self.refs.values())).shape[-1]
        n = clip.num_frames
        self.carries = {d: _Carry(d, n, self.refs, clip.keys) for d in (1, -1)}
        self._models: dict[int, ColourModel] = {}
        self._ref_frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # keyframe: (working rgb, grey)
        self._fused = Ring(backend.settings.vote_window + 2)

    # -- keys ------------------------------------------------------------------------------------
    def fused_key(self, i: int) -> str:
        return content_key("fused", self.carries[1].key[i], self.carries[-1].key[i])

    def maps_key(self, i: int) -> str:
        return content_key("forward maps", self.carries[1].key[i])

    # -- 2.-3. carries and fusion ----------------------------------------------------------------
    def make_fused(self, needed: list[int]) -> None:
        """Write the fused maps of `needed` frames that the scratch cache lacks.

        2. forward sweep: carry from the keyframes before, caching each needed frame's forward maps;
        3. backward sweep: carry from the keyframes after and fuse with the forward maps.
        """
        scratch = self.clip.scratch
        todo = [i for i in needed if not scratch.has("fused", self.fused_key(i))]
        forward = [i for i in todo if self.carries[1].ref[i] is not None and not scratch.has("maps", self.maps_key(i))]
        for i, (maps, conf) in self._carry(1, forward):
            scratch.save("maps", self.maps_key(i), np.concatenate([maps, conf[..., None]], axis=-1))
        for i, carried in self._carry(-1, [i for i in todo if self.carries[-1].ref[i] is not None]):
            self._save_fused(i, carried)
        for i in todo:  # after the last keyframe: no backward carry
            if self.carries[-1].ref[i] is None:
                self._save_fused(i, None)

    def _save_fused(self, i: int, backward: tuple[np.ndarray, np.ndarray] | None) -> None:
        scratch, h, w, k = self.clip.scratch, *self.clip.size, self.classes
        forward = None
        if self.carries[1].ref[i] is not None:
            both = scratch.load("maps", self.maps_key(i), (h, w, k + 1))
            if both is None:  # removed meanwhile (a finished job's cleanup): carry it again
                both = self._forward_maps(i)
            forward = (both[..., :k], both[..., k])
        power = self.backend.settings.propagate.fuse_power
        scratch.save("fused", self.fused_key(i), _fuse([forward, backward], (h, w, k), power))

    def _forward_maps(self, i: int) -> np.ndarray:
        (_, (maps, conf)), = self._carry(1, [i])
        return np.concatenate([maps, conf[..., None]], axis=-1)

    def _carry(self, direction: int, targets: list[int]) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]:
        """Carry coordinates through the frames up to every target; yield (i, (maps, conf)) at the targets.

        The sweep starts at the nearest keyframe or cached checkpoint before the first target
        (in sweep order) and caches a checkpoint every `CHECKPOINT` frames from its keyframe.
        """
        if not targets:
            return
        b, clip, carry = self.backend, self.clip, self.carries[direction]
        h, w = clip.size
        first, last = (min(targets), max(targets)) if direction == 1 else (max(targets), min(targets))
        start, coords = first, None
        while coords is None:
            if start in self.refs:
                coords = _identity(h, w)
            elif carry.checkpoint(start):
                coords = clip.scratch.load(f"carry{direction:+d}", carry.key[start], (h, w, 3))
            if coords is None:
                start -= direction
        wanted = set(targets)
        span = range(start, last + direction, direction)
        label = "carrying keyframes " + ("forward" if direction == 1 else "backward")
        for done, i in enumerate(span, start=1):
            b.report("carry", done, len(span), label)
            if i != start:
                if i in self.refs:
                    coords = _identity(h, w)
                else:
                    coords = self._step(coords, carry.ref[i], i, direction)
                    kind = f"carry{direction:+d}"
                    if carry.checkpoint(i) and not clip.scratch.has(kind, carry.key[i]):
                        clip.scratch.save(kind, carry.key[i], coords)
            if i in wanted:
                yield i, self._maps(coords, carry.ref[i], i, direction)

    def _step(self, coords: np.ndarray, ref: int, i: int, direction: int) -> np.ndarray:
        """Coordinates carried one step into frame i: small parts moved whole, flow, trail filled, re-matched."""
        b, clip = self.backend, self.clip
        j = i - direction
        moves = b.move_parts(coords, self.refs[ref], clip.packed(i, -direction), clip.packed(j, direction),
                             clip.work(j), clip.work(i))
        coords = moves.fill_trail(b.step(coords, moves.flow), self.refs[ref])
        return moves.hold(coords, self._rematch(coords, ref, i))

    def _rematch(self, coords: np.ndarray, ref: int, i: int) -> np.ndarray:
        if self.backend.settings.propagate.rematch_radius <= 0:
            return coords
        ref_rgb, ref_grey = self._ref_frame(ref)
        return self.backend.rematch(coords, self.clip.work(i), ref_rgb, self.clip.match(i, ref_grey))

    def _ref_frame(self, ref: int) -> tuple[np.ndarray, np.ndarray]:
        if ref not in self._ref_frames:
            self._ref_frames[ref] = (self.clip.work(ref), self.clip.grey(ref))
        return self._ref_frames[ref]

    def _maps(self, coords: np.ndarray, ref: int, i: int, direction: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame i's (maps (h, w, K), conf (h, w)) read from keyframe `ref` through coordinates carried in `direction`."""
        b = self.backend
        maps = read_at(self.refs[ref], coords)
        conf = coords[..., 2].copy()
        if i != ref:
            maps = b.with_appearance(maps, conf, self._model(ref), self.clip.work(i))
            maps = b.with_motion(maps, conf, self.clip.packed(i, -direction))
            maps = b.snap(maps, self.clip.work(i), conf)
            conf = b.fusion_confidence(conf, self.clip.work(i), self._ref_frame(ref)[0], coords)
        return maps, conf

    def _model(self, ref: int) -> ColourModel:
        if ref not in self._models:
            levels = self.backend.settings.propagate.appearance_levels
            self._models[ref] = ColourModel.fit([self.clip.work(ref)], [self.refs[ref]], levels=levels)
        return self._models[ref]

    # -- 4. output ---------------------------------------------------------------------------------
    def fused(self, i: int) -> np.ndarray:
        """Frame i's fused maps (h, w, K) (recomputed if another chunk removed the cache meanwhile)."""
        shape = (*self.clip.size, self.classes)

        def load() -> np.ndarray:
            maps = self.clip.scratch.load("fused", self.fused_key(i), shape)
            if maps is None:
                self.make_fused([i])
                maps = self.clip.scratch.load("fused", self.fused_key(i), shape)
            return maps

        return self._fused.get(i, load)

    def temporal(self, t: int) -> np.ndarray:
        return self.backend.temporal(self.fused, self.clip.work, self.clip, self.clip.num_frames, t)


def _trust(separability: float, full: float) -> float:
    """How far colours of this separability may decide: in proportion up to `full`, then fully (0: always fully)."""
    return 1.0 if full <= 0 else min(1.0, separability / full)


def _patch_error(ref_rgb: np.ndarray, rgb: np.ndarray, xy: np.ndarray, radius: int) -> np.ndarray:
    """(h, w) mean over a (2r+1)^2 patch of the L1 colour difference between `rgb` and `ref_rgb` read at `xy`."""
    read = read_at(ref_rgb, xy)
    diff = cv2.transform(cv2.absdiff(read, rgb), _SUM_CHANNELS)
    return cv2.blur(diff, (2 * radius + 1, 2 * radius + 1)).reshape(xy.shape[:2])


_SUM_CHANNELS = np.ones((1, 3), np.float32)


def _shifted(field: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """A copy of `field` (h, w, C) moved by (dy, dx): out(y, x) = field(y - dy, x - dx), edges replicated."""
    out = np.empty_like(field)
    h, w = field.shape[:2]
    dy, dx = int(np.clip(dy, -h + 1, h - 1)), int(np.clip(dx, -w + 1, w - 1))
    src = field[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    out[max(dy, 0):h - max(-dy, 0), max(dx, 0):w - max(-dx, 0)] = src
    if dy > 0:
        out[:dy] = out[dy:dy + 1]
    elif dy < 0:
        out[dy:] = out[dy - 1:dy]
    if dx > 0:
        out[:, :dx] = out[:, dx:dx + 1]
    elif dx < 0:
        out[:, dx:] = out[:, dx - 1:dx]
    return out


def _identity(h: int, w: int) -> np.ndarray:
    """(h, w, [x_ref, y_ref, confidence]) coordinates of every pixel in its own frame, confidence 1."""
    xs, ys = pixel_grid(h, w)
    return np.stack([xs, ys, np.ones_like(xs)], axis=-1)
