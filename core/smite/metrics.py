"""Evaluation measures used by `smite bench`: J, boundary F, per-part mIoU, temporal warping error.

NumPy arrays in, Python floats out. J and F follow the DAVIS toolkit (F: boundary F-measure with a
tolerance of 0.008 of the image diagonal); our mIoU counts background as a class and pools each clip
into one confusion matrix; the warping error measures flicker the way video style-transfer papers do
(difference to the flow-warped next frame, occluded pixels left out). The `smite_*` functions are the
authors' own protocol (their `src/metrics.py`), which averages differently: see that section.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J: |pred ∩ gt| / |pred ∪ gt| of two bool masks `(H, W)`; both empty gives 1."""
    pred, gt = _bool_pair(pred, gt)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def _bool_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"expected two masks (H, W) of the same shape, got {pred.shape} and {gt.shape}")
    return pred, gt


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary map `(H, W)` bool of a mask, as the DAVIS toolkit's `seg2bmap`.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour;
    the last row and column compare only along the image edge.
    """
    seg = np.asarray(mask).astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    """Structuring element of all offsets with x² + y² <= r² (skimage's `disk`)."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """DAVIS boundary F-measure of two bool masks `(H, W)`.

    Boundaries come from `seg2bmap`; a boundary pixel matches when the other mask's boundary lies
    within `ceil(bound_th * diagonal)` pixels (`bound_th >= 1` is taken as pixels), found by disk
    dilation. Precision = matched predicted boundary / predicted boundary, recall likewise for the
    ground truth, F = 2PR / (P + R). As in the toolkit: both boundaries empty gives 1; only one
    empty gives 0.
    """
    pred, gt = _bool_pair(pred, gt)
    radius = int(bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape)))
    pb, gb = seg2bmap(pred), seg2bmap(gt)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    disk = _disk(radius)
    p_dil = cv2.dilate(pb.astype(np.uint8), disk).astype(bool)
    g_dil = cv2.dilate(gb.astype(np.uint8), disk).astype(bool)
    precision = np.logical_and(pb, g_dil).sum() / n_p
    recall = np.logical_and(gb, p_dil).sum() / n_g
    if precision + recall == 0:
        return 0.0
    return float(2.0 * precision * recall / (precision + recall))


class ConfusionAccumulator:
    """Confusion counts of label maps over a whole sequence (or data set) for per-part IoU.

    Labels are `0..num_classes-1` with 0 = background. Pixels whose ground truth equals
    `ignore_index` (e.g. 255, DAVIS/PASCAL "void") are skipped. IoU of class c is
    TP / (TP + FP + FN) summed over everything added, so large and small frames weigh by pixel count.
    `miou` averages over the classes (background included) that appear in the ground truth or the
    prediction of anything added (pooled over frames; `smite_part_iou` is the authors' per-frame mean).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)  # [gt, pred]

    def add(self, pred_labels: np.ndarray, gt_labels: np.ndarray) -> None:
        """Count one frame: two integer label maps `(H, W)` of the same shape."""
        pred, gt = np.asarray(pred_labels), np.asarray(gt_labels)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        pred, gt = pred.astype(np.int64).ravel(), gt.astype(np.int64).ravel()
        if self.ignore_index is not None:
            keep = gt != self.ignore_index
            pred, gt = pred[keep], gt[keep]
        for name, arr in (("prediction", pred), ("ground truth", gt)):
            if arr.size and (arr.min() < 0 or arr.max() >= self.num_classes):
                bad = arr.min() if arr.min() < 0 else arr.max()
                raise ValueError(f"{name} has label {bad}, outside 0..{self.num_classes - 1}")
        n = self.num_classes
        self.matrix += np.bincount(gt * n + pred, minlength=n * n).reshape(n, n)

    def iou_per_class(self) -> np.ndarray:
        """IoU per class `(num_classes,)`; NaN for classes absent from both gt and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes present in gt or prediction; raises if nothing was added."""
        iou = self.iou_per_class()
        if np.all(np.isnan(iou)):
            raise ValueError("no labelled pixels were added to the confusion accumulator")
        return float(np.nanmean(iou))


def dis_flow(grey_a: np.ndarray, grey_b: np.ndarray) -> np.ndarray:
    """Dense optical flow `(H, W, 2)` float32 (dx, dy) from grey uint8 image a to b, OpenCV DIS medium."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(grey_a, grey_b, None)


def _grey_u8(plate: np.ndarray) -> np.ndarray:
    """`(H, W, 3)` plate (uint8, or float display-referred 0..1) to grey uint8 `(H, W)`."""
    plate = np.asarray(plate)
    if plate.ndim != 3 or plate.shape[2] != 3:
        raise ValueError(f"expected a plate (H, W, 3), got {plate.shape}")
    if plate.dtype != np.uint8:
        plate = (np.clip(np.nan_to_num(plate.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(plate), cv2.COLOR_RGB2GRAY)


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample img `(H, W)` float32 at x + flow(x) (bilinear)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = gx + flow[..., 0]
    map_y = gy + flow[..., 1]
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistent_flow_mask(flow_fwd: np.ndarray, flow_bwd: np.ndarray) -> np.ndarray:
    """Pixels `(H, W)` bool where forward flow f (t→t+1) and backward flow b (t+1→t) agree.

    The standard occlusion test (Sundaram et al. 2010; Ruder et al. 2016):
    `|f(x) + b(x + f(x))|² < 0.01 (|f(x)|² + |b(x + f(x))|²) + 0.5`, and x + f(x) inside the frame.
    """
    h, w = flow_fwd.shape[:2]
    b_at = np.stack([_warp(np.ascontiguousarray(flow_bwd[..., c]), flow_fwd) for c in range(2)], axis=-1)
    total = flow_fwd + b_at
    lhs = (total**2).sum(-1)
    rhs = 0.01 * ((flow_fwd**2).sum(-1) + (b_at**2).sum(-1)) + 0.5
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    tx, ty = gx + flow_fwd[..., 0], gy + flow_fwd[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (lhs < rhs) & inside


def warping_error(
    m_t: np.ndarray,
    m_next: np.ndarray,
    plate_t: np.ndarray | None = None,
    plate_next: np.ndarray | None = None,
    flow_fn: FlowFn | None = None,
    *,
    flow_fwd: np.ndarray | None = None,
    flow_bwd: np.ndarray | None = None,
) -> float:
    """Temporal warping error (flicker) between the mattes of frames t and t+1.

    m_t, m_next: `(K, H, W)` or `(H, W)` float mattes; plate_t, plate_next: `(H, W, 3)` plates (uint8
    or float 0..1), used only to compute flows. Flows are `(H, W, 2)` float (dx, dy): `flow_fwd` maps
    frame t to t+1, `flow_bwd` t+1 to t; pass them to reuse them across measures, otherwise they come
    from `flow_fn(grey_a, grey_b)` (default: OpenCV DIS, medium preset, on grey uint8 plates).

    Returns the mean of `|M_t(x) - M_{t+1}(x + f(x))|` over the pixels that pass the forward-backward
    test (`consistent_flow_mask`) and over all K channels; NaN when no pixel passes.
    """
    a = np.asarray(m_t, dtype=np.float32)
    b = np.asarray(m_next, dtype=np.float32)
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise ValueError(f"expected two mattes (K, H, W) or (H, W) of the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    h, w = a.shape[1:]
    if flow_fwd is None or flow_bwd is None:
        if plate_t is None or plate_next is None:
            raise ValueError("warping_error needs either both plates or both flows")
        ga, gb = _grey_u8(plate_t), _grey_u8(plate_next)
        if ga.shape != (h, w) or gb.shape != (h, w):
            raise ValueError(f"plates {ga.shape} and {gb.shape} do not match the mattes' size {(h, w)}")
        fn = flow_fn or dis_flow
        flow_fwd = fn(ga, gb) if flow_fwd is None else flow_fwd
        flow_bwd = fn(gb, ga) if flow_bwd is None else flow_bwd
    flow_fwd = np.asarray(flow_fwd, dtype=np.float32)
    flow_bwd = np.asarray(flow_bwd, dtype=np.float32)
    for name, f in (("forward", flow_fwd), ("backward", flow_bwd)):
        if f.shape != (h, w, 2):
            raise ValueError(f"{name} flow has shape {f.shape}, expected {(h, w, 2)} to match the mattes")
    valid = consistent_flow_mask(flow_fwd, flow_bwd)
    n_valid = int(valid.sum())
    if n_valid == 0:
        return float("nan")
    total = 0.0
    for k in range(a.shape[0]):
        warped = _warp(np.ascontiguousarray(b[k]), flow_fwd)
        total += float(np.abs(a[k] - warped)[valid].sum(dtype=np.float64))
    return total / (n_valid * a.shape[0])


# --- SMITE's own evaluation (authors' `src/metrics.py::calculate_metrics`) -----------------------
# The SMITE-50 numbers in the paper come from this protocol, which differs from ours above: label maps
# are compared at 512x512, mIoU averages per-frame IoU (in percent) over the frames whose ground
# truth holds the class, a class never in the ground truth scores 0 and still counts, and F / J
# average over the foreground objects of the ground truth only (background is not an object).

SMITE_EVAL_SIZE = 512  # authors' utils/gt_extractor.py:49 resizes every ground-truth map to 512x512


def _label_stack(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=np.int64), np.asarray(gt, dtype=np.int64)
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"expected two label stacks (N, H, W) of the same shape, got {pred.shape} and {gt.shape}")
    return pred, gt


def smite_part_iou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class IoU in percent `(num_classes,)` of label stacks `(N, H, W)`, class 0 = background.

    For each class: IoU = 100·|P∩G| / (|P∪G| + 1e-7) per frame, averaged over the frames whose ground
    truth contains the class (frames without it are skipped, whatever the prediction holds there);
    a class absent from every ground-truth frame gets 0.
    """
    pred, gt = _label_stack(pred, gt)
    out = np.zeros(int(num_classes), dtype=np.float64)
    for c in range(int(num_classes)):
        values = []
        for p, g in zip(pred, gt):
            g_c = g == c
            if not g_c.any():
                continue
            p_c = p == c
            inter = np.logical_and(p_c, g_c).sum()
            union = np.logical_or(p_c, g_c).sum()
            values.append(100.0 * inter / (union + 1e-7))
        out[c] = float(np.mean(values)) if values else 0.0
    return out


def _objects(gt: np.ndarray) -> np.ndarray:
    """Foreground object ids of a ground-truth stack: values in 1..254 anywhere in it (DAVIS toolkit)."""
    return np.unique(gt[(gt > 0) & (gt < 255)])


def smite_f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Sequence boundary F: `boundary_f` per frame and ground-truth object, mean over objects, then frames.

    Objects are the foreground ids present anywhere in `gt` (background excluded); a frame where an
    object is in neither mask scores 1 for it. Raises if `gt` has no foreground object.
    """
    pred, gt = _label_stack(pred, gt)
    objects = _objects(gt)
    if objects.size == 0:
        raise ValueError("ground truth has no foreground object")
    table = np.array([[boundary_f(p == o, g == o, bound_th) for o in objects] for p, g in zip(pred, gt)])
    return float(table.mean(1).mean())


def smite_jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Sequence J: `jaccard` per frame and ground-truth object (empty union gives 1), mean over objects, then frames."""
    pred, gt = _label_stack(pred, gt)
    objects = _objects(gt)
    if objects.size == 0:
        raise ValueError("ground truth has no foreground object")
    table = np.array([[jaccard(p == o, g == o) for o in objects] for p, g in zip(pred, gt)])
    return float(table.mean(1).mean())


def smite_scores(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> dict:
    """The authors' `metrics.json` for one video: f_measure, jaccard, per-part IoU, mean_iou (%), mae.

    `pred` and `gt` are label stacks `(N, H, W)` already at the evaluation size; mean_iou is the mean of
    `smite_part_iou` over all `num_classes` classes (background included); mae is the mean absolute
    difference of the label ids themselves, as theirs.
    """
    pred, gt = _label_stack(pred, gt)
    iou = smite_part_iou(pred, gt, num_classes)
    return {
        "f_measure": smite_f_measure(pred, gt),
        "jaccard": smite_jaccard(pred, gt),
        "iou_per_part": [float(v) for v in iou],
        "mean_iou": float(iou.mean()),
        "mae": float(np.abs(gt - pred).mean()),
    }


def to_eval_size(labels: np.ndarray, size: int = SMITE_EVAL_SIZE) -> np.ndarray:
    """Label map `(H, W)` resized to `size`x`size` by nearest neighbour (OpenCV), as the authors' ground truth."""
    labels = np.asarray(labels)
    return cv2.resize(labels.astype(np.int32), (size, size), interpolation=cv2.INTER_NEAREST)
