"""Small parts carried as a whole (weight-free backend): one translation per part where the flow loses it.

Why: a small part that moves fast and blurs (a cap on a swinging head) is smoothed into its
background by DIS, which underestimates its motion about threefold; the carry's backward warp
then leaves the part behind on the background a little more every frame, and from one keyframe it
is lost for good within a few frames (xmem2_caps J 0.0, issue 12). A small part moves nearly
rigidly from one frame to the next, and the part's own pixels, matched as one template, find
where it went even when the dense flow does not.

Per part and step of a carry, on the maps the carry holds in the frame it comes from:

1. the template is the part's largest connected piece (a few stray pixels far off would otherwise
   stretch the search); a part too large to move rigidly (`max_size`) is left to the flow;
2. its translation is the minimum of the masked sum of squared colour differences (SSD) over a
   window around it, mildly drawn (`PRIOR`) towards the flow's median motion on the part so that a
   look-alike patch at the window's edge does not win;
3. the translation replaces the flow on the moved part, unless the flow matches the part's pixels
   `ratio` times better than it (an articulated subject: on the DAVIS dog and horse the flow
   matches 3-7 times better) or the part barely moves (`min_shift`: a still part keeps its flow);
4. what the part left (its trail) takes the coordinates of the nearest pixel the carry holds as
   background, at low confidence so the colour and motion cues decide there;
5. re-matching (`PropagateBackend.rematch`) is held off around a moved part (`guard`): its colour
   test against a sharp keyframe prefers look-alike background to the blurred part and would undo
   the move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..track.flow import read_at, warp_back

MIN_PIXELS = 16  # a part with fewer working pixels above half its share is left to the flow
SEARCH_MIN = 8  # working px searched around the part at least ...
SEARCH_FRACTION = 0.5  # ... and this fraction of its long side
PRIOR = 0.25  # SSD factor 1 + PRIOR * (distance from the flow's median motion / search radius)**2
GROW = 2  # working px around the moved part that move with it (its soft edge)
TRAIL_CONFIDENCE = 0.3  # confidence (at most) of a trail pixel; 0, 0.3 or 0.6 give caps J 0.218, 0.220, 0.216


@dataclass
class PartMoves:
    """One carry step's part translations: the flow to step with, the trail to fill, where to hold re-matching."""

    flow: np.ndarray  # (h, w, [fx, fy, ok]) the step's backward flow (that array itself where no part moved)
    # with the moved parts' translations: read it, never write it
    trail: np.ndarray  # (h, w) bool: pixels the moved parts left
    guard: list[tuple[int, int, int, int]] = field(default_factory=list)  # (y0, y1, x0, x1) boxes

    @property
    def moved(self) -> bool:
        return bool(self.guard)

    def fill_trail(self, coords: np.ndarray, ref_maps: np.ndarray) -> np.ndarray:
        """Coordinates `(h, w, 3)` whose trail pixels take those of the nearest pixel held as background.

        ref_maps: the keyframe's maps `(h, w, K)` (class 0 background) the coordinates read.
        """
        if not self.trail.any():
            return coords
        h, w = self.trail.shape
        labels = read_at(ref_maps, coords)
        source = ~self.trail & (labels[..., 0] > 0.5)
        if not source.any():
            return coords
        _, nearest = cv2.distanceTransformWithLabels((~source).astype(np.uint8), cv2.DIST_L2, 5,
                                                     labelType=cv2.DIST_LABEL_PIXEL)
        ys, xs = np.nonzero(source)
        pixel_of = np.zeros(int(nearest.max()) + 1, np.int64)
        pixel_of[nearest[ys, xs]] = ys * w + xs
        taken = coords.reshape(-1, 3)[pixel_of[nearest[self.trail]]]
        out = coords.copy()
        out[self.trail, :2] = taken[:, :2]
        out[self.trail, 2] = np.minimum(taken[:, 2], TRAIL_CONFIDENCE)
        return out

    def hold(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """`after` (re-matched coordinates) with `before` kept inside the guard boxes."""
        if not self.guard:
            return after
        out = after.copy()
        for y0, y1, x0, x1 in self.guard:
            out[y0:y1, x0:x1] = before[y0:y1, x0:x1]
        return out


def move_parts(maps: np.ndarray, backward: np.ndarray, forward: np.ndarray, prev_rgb: np.ndarray,
               rgb: np.ndarray, ratio: float, max_size: float, min_shift: float) -> PartMoves:
    """The part translations of one carry step (module doc).

    maps: the carried maps `(h, w, K)` in the frame the step comes from (prev_rgb), class 0 background;
    backward: the step's flow `(h, w, [fx, fy, ok])` from this frame (rgb) to that one; forward: the
    flow the other way, whose fit on the part's pixels the translation must beat.
    """
    h, w = backward.shape[:2]
    moves = PartMoves(backward, np.zeros((h, w), bool))  # the flow is copied once a part moves
    if ratio <= 0:
        return moves
    carried_back = None
    taken = np.zeros((h, w), bool)
    left = []
    for k in range(1, maps.shape[-1]):
        found = _largest_piece(maps[..., k] > 0.5)
        if found is None:
            continue
        piece, box = found
        if np.sqrt(piece.sum()) > max_size * max(h, w):
            continue
        shift, cost = _best_shift(piece, box, forward, prev_rgb, rgb)
        if cost is None or np.hypot(*shift) < min_shift:
            continue
        fit = _flow_cost(piece, forward, prev_rgb, rgb)
        if cost >= ratio * fit:
            continue
        dx, dy = shift
        moved = cv2.warpAffine(maps[..., k], np.float32([[1, 0, dx], [0, 1, dy]]), (w, h)) > 0.5
        moved = _grown(moved)
        if moves.flow is backward:
            moves.flow = backward.copy()
        flow = moves.flow
        flow[moved, 0], flow[moved, 1], flow[moved, 2] = -dx, -dy, 1.0
        taken |= moved
        if carried_back is None:  # where the flow alone would have carried each part
            carried_back = warp_back(maps, backward)
        left.append(_grown(carried_back[..., k] > 0.1))
        moves.guard.append(_grown_box(moved | left[-1], max(SEARCH_MIN, _long_side(box)), h, w))
    for part_left in left:  # after all moves: one part's trail never overwrites another's move
        moves.trail |= part_left & ~taken
    return moves


def _grown(mask: np.ndarray) -> np.ndarray:
    """`mask` grown by GROW px (a square neighbourhood)."""
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * GROW + 1,) * 2, np.uint8)) > 0


def _largest_piece(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The largest 8-connected piece of `mask` and its box (y0, y1, x0, x1); None under MIN_PIXELS."""
    if mask.sum() < MIN_PIXELS:
        return None
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    biggest = 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))
    if stats[biggest, cv2.CC_STAT_AREA] < MIN_PIXELS:
        return None
    x0, y0, bw, bh = (int(v) for v in stats[biggest, :4])
    return labels == biggest, (y0, y0 + bh, x0, x0 + bw)


def _long_side(box: tuple[int, int, int, int]) -> int:
    y0, y1, x0, x1 = box
    return max(y1 - y0, x1 - x0)


def _grown_box(mask: np.ndarray, by: int, h: int, w: int) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return max(0, ys.min() - by), min(h, ys.max() + 1 + by), max(0, xs.min() - by), min(w, xs.max() + 1 + by)


def _best_shift(piece: np.ndarray, box: tuple[int, int, int, int], forward: np.ndarray, prev_rgb: np.ndarray,
                rgb: np.ndarray) -> tuple[tuple[int, int], float | None]:
    """((dx, dy), mean SSD per pixel and channel) of the piece's (in `box`) best translation into `rgb`."""
    h, w = piece.shape
    y0, y1, x0, x1 = box
    radius = max(SEARCH_MIN, int(SEARCH_FRACTION * _long_side(box)))
    sy0, sy1, sx0, sx1 = max(0, y0 - radius), min(h, y1 + radius), max(0, x0 - radius), min(w, x1 + radius)
    template = np.ascontiguousarray(prev_rgb[y0:y1, x0:x1])
    weights = np.ascontiguousarray(np.repeat(piece[y0:y1, x0:x1, None], 3, axis=2).astype(np.float32))
    ssd = cv2.matchTemplate(np.ascontiguousarray(rgb[sy0:sy1, sx0:sx1]), template, cv2.TM_SQDIFF, mask=weights)
    if ssd.size == 0:
        return (0, 0), None
    oy, ox = np.mgrid[0:ssd.shape[0], 0:ssd.shape[1]].astype(np.float32)
    oy += sy0 - y0
    ox += sx0 - x0
    median_x, median_y = float(np.median(forward[..., 0][piece])), float(np.median(forward[..., 1][piece]))
    drawn = ssd * (1.0 + PRIOR * ((ox - median_x) ** 2 + (oy - median_y) ** 2) / radius ** 2)
    best_y, best_x = np.unravel_index(int(np.argmin(drawn)), drawn.shape)
    cost = float(ssd[best_y, best_x]) / (3.0 * piece.sum())
    return (int(ox[best_y, best_x]), int(oy[best_y, best_x])), cost


def _flow_cost(piece: np.ndarray, forward: np.ndarray, prev_rgb: np.ndarray, rgb: np.ndarray) -> float:
    """Mean SSD per pixel and channel of the piece's pixels moved along the forward flow."""
    landed = warp_back(rgb, forward)
    return float(((prev_rgb - landed)[piece] ** 2).sum()) / (3.0 * piece.sum())
