"""Image files in and out through OpenImageIO, as float32 (H, W, C) arrays.

OpenImageIO reads every plate format a facility uses (EXR, DPX, TIFF, PNG, JPEG) and
normalises integer pixels to [0, 1] when asked for float. Writes are atomic: a temp file
beside the target, then `os.replace`, so a reader (Nuke, the farm, a resumed render)
never sees half a frame.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping

import numpy as np
import OpenImageIO as oiio

from ..errors import FrameError, OutputError
from ..hostapi.atomic import replacing

_OUT_FORMATS = {"float": oiio.FLOAT, "half": oiio.HALF, "uint8": oiio.UINT8, "uint16": oiio.UINT16}
MAX_IMAGE_PIXELS = 16384 * 8192  # 134 Mpx, 4x an 8K frame: a larger header is a decompression bomb
MAX_IMAGE_CHANNELS = 256  # far above any plate or mask (AOV-heavy EXRs hold a few dozen)
_INT_FORMATS = {"uint8": "uint8", "int8": "int8", "uint16": "uint16", "int16": "int16", "uint32": "uint32", "int32": "int32"}


def _error_text(inp: object | None = None) -> str:
    """OIIO's pending error message on one line (it is cleared by reading it)."""
    text = inp.geterror() if inp is not None else oiio.geterror()
    return " ".join(str(text).split()) or "unknown OpenImageIO error"


@contextlib.contextmanager
def _open(path: str) -> Iterator[oiio.ImageInput]:
    """An open ImageInput for ``path``, closed afterwards; FrameError when it cannot be opened."""
    if not os.path.isfile(path):
        raise FrameError(f"cannot read {path}: no such file", path=path)
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise FrameError(f"cannot read {path}: {_error_text()}", path=path)
    try:
        spec = inp.spec()  # header only: a decompression bomb is refused before any pixel is decoded
        if spec.width * spec.height > MAX_IMAGE_PIXELS or spec.nchannels > MAX_IMAGE_CHANNELS:
            raise FrameError(f"cannot read {path}: its header claims {spec.width}x{spec.height} pixels and "
                             f"{spec.nchannels} channels; at most {MAX_IMAGE_PIXELS} pixels and "
                             f"{MAX_IMAGE_CHANNELS} channels are read", path=path)
        yield inp
    finally:
        inp.close()


def _read_pixels(inp: oiio.ImageInput, path: str, fmt: str) -> np.ndarray:
    """All channels of subimage 0 in its display window as (H, W, C) of type ``fmt``; FrameError on truncated data."""
    pixels = inp.read_image(fmt)
    if pixels is None or inp.has_error:
        raise FrameError(f"cannot read {path}: {_error_text(inp)}", path=path)
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return _in_display_window(pixels, inp.spec())


def _in_display_window(pixels: np.ndarray, spec: oiio.ImageSpec) -> np.ndarray:
    """``pixels`` (the data window) placed in the display window: outside data reads 0, overscan is dropped.

    An EXR from Nuke stores the node's bbox as its data window, which may be larger (a feather
    past the frame edge) or smaller (a shape inside the frame) than the format, the display
    window; every frame of a shot shares the display window, so that is what callers get.
    """
    x, y, w, h = spec.x, spec.y, spec.width, spec.height
    fx, fy, fw, fh = spec.full_x, spec.full_y, spec.full_width, spec.full_height
    if fw <= 0 or fh <= 0 or (x, y, w, h) == (fx, fy, fw, fh):
        return pixels
    out = np.zeros((fh, fw, pixels.shape[2]), dtype=pixels.dtype)
    x0, x1 = max(x, fx), min(x + w, fx + fw)
    y0, y1 = max(y, fy), min(y + h, fy + fh)
    if x1 > x0 and y1 > y0:
        out[y0 - fy:y1 - fy, x0 - fx:x1 - fx] = pixels[y0 - y:y1 - y, x0 - x:x1 - x]
    return out


def read_image(path: str) -> np.ndarray:
    """Pixels of ``path`` as float32 (H, W, C), C as stored; integer files normalised to [0, 1]."""
    with _open(path) as inp:
        return np.ascontiguousarray(_read_pixels(inp, path, "float"), dtype=np.float32)


def _require_finite(pixels: np.ndarray, path: str) -> None:
    if not np.isfinite(pixels).all():
        raise FrameError(f"non-finite pixels (NaN/inf) in {path}", path=path)


def read_rgb(path: str) -> np.ndarray:
    """Colour of ``path`` as float32 (H, W, 3): grey is replicated, alpha and extra channels dropped.

    Non-finite pixels are refused here because one NaN spreads through every later step.
    """
    pixels = read_image(path)
    rgb = np.repeat(pixels[:, :, :1], 3, axis=2) if pixels.shape[2] < 3 else pixels[:, :, :3]
    _require_finite(rgb, path)
    return np.ascontiguousarray(rgb)


def read_mask(path: str) -> np.ndarray:
    """A soft mask as float32 (H, W) in [0, 1]: the alpha channel if there is one, else the first channel."""
    with _open(path) as inp:
        spec = inp.spec()
        names = list(spec.channelnames)
        if "A" in names:
            channel = names.index("A")
        elif spec.nchannels >= 4:
            channel = 3
        elif spec.nchannels == 2 and spec.alpha_channel == 1:
            channel = 1
        else:
            channel = 0
        mask = _read_pixels(inp, path, "float")[:, :, channel]
    _require_finite(mask, path)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def _is_palette_png(path: str) -> bool:
    if not path.lower().endswith(".png"):
        return False
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode in ("P", "PA")
    except OSError:
        return False


def read_label_map(path: str) -> np.ndarray:
    """Raw label ids of ``path`` as int32 (H, W).

    PASCAL/DAVIS masks are palette PNGs whose pixel values are the ids; OIIO would expand the
    palette to RGB colours, so those are read with PIL. Other files keep their integer values
    (no normalisation); float files are rounded; multi-channel files give their first channel.
    """
    if _is_palette_png(path):
        from PIL import Image

        try:
            with Image.open(path) as im:
                return np.array(im.convert("P") if im.mode == "PA" else im, dtype=np.int32)
        except OSError as exc:
            raise FrameError(f"cannot read {path}: {exc}", path=path) from exc
    with _open(path) as inp:
        native = str(inp.spec().format)
        if native in _INT_FORMATS:
            labels = _read_pixels(inp, path, _INT_FORMATS[native])[:, :, 0]
        else:
            values = _read_pixels(inp, path, "float")[:, :, 0]
            _require_finite(values, path)
            labels = np.rint(values)
    return labels.astype(np.int32)


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of ``path``'s display window (what the readers return) from its header alone."""
    with _open(path) as inp:
        spec = inp.spec()
        if spec.full_width > 0 and spec.full_height > 0:
            return int(spec.full_width), int(spec.full_height)
        return int(spec.width), int(spec.height)


NAME_MAX = 255  # bytes in one file name on every file system a facility uses


def _temp_path(path: str, pid: int | None = None) -> str:
    """Hidden temp name beside ``path`` that keeps the real extension last, so OIIO picks the format.

    ``.<stem>.<pid>.tmp<ext>``; when that would exceed `NAME_MAX` (a valid 245-character output name),
    the stem is cut and a hash of it appended, so the temp name stays unique and legal.
    """
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    suffix = f".{os.getpid() if pid is None else pid}.tmp{ext}"
    if len(os.fsencode(f".{stem}{suffix}")) > NAME_MAX:
        digest = hashlib.sha1(os.fsencode(stem)).hexdigest()[:12]
        stem = os.fsencode(stem)[:100].decode("utf-8", "ignore") + "~" + digest
    return os.path.join(folder, f".{stem}{suffix}")


def _ensure_folder(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder}: {exc.strerror or exc}", path=folder) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable", path=folder)


def _set_attribute(spec: oiio.ImageSpec, name: str, value: object) -> None:
    if isinstance(value, bool) or isinstance(value, int):
        spec.attribute(name, int(value))
    elif isinstance(value, float):
        spec.attribute(name, value)
    else:
        spec.attribute(name, str(value))


def _write_pixels(temp: str, pixels: np.ndarray, spec: oiio.ImageSpec, path: str) -> None:
    out = oiio.ImageOutput.create(temp)
    if out is None:
        raise OutputError(f"cannot write {path}: {_error_text()}", path=path)
    try:
        if not out.open(temp, spec) or not out.write_image(pixels):
            raise OutputError(f"cannot write {path}: {_error_text(out)}", path=path)
    finally:
        out.close()


def write_image(
    path: str,
    array: np.ndarray,
    *,
    dtype: str = "float",
    channel_names: list[str] | None = None,
    compression: str | None = None,
    attributes: Mapping[str, object] | None = None,
) -> None:
    """Write ``array`` ((H, W) or (H, W, C)) to ``path`` atomically, in the format of its extension.

    ``dtype`` is the stored pixel type ("float", "half", "uint8", "uint16"; float input is
    clamped to [0, 1] for integer types, integer input is taken as normalised). A missing
    folder is created; the temp file is removed on any failure.
    """
    if dtype not in _OUT_FORMATS:
        raise ValueError(f"dtype must be one of {sorted(_OUT_FORMATS)}, not {dtype!r}")
    pixels = np.asarray(array)
    if pixels.ndim == 2:  # OIIO's Python binding misreads a 2-D array for a one-channel image
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or 0 in pixels.shape:
        raise ValueError(f"image array must be (H, W) or (H, W, C), got shape {np.shape(array)}")
    if pixels.dtype not in (np.float32, np.float16, np.uint8, np.uint16):
        pixels = pixels.astype(np.float32)
    pixels = np.ascontiguousarray(pixels)
    height, width, channels = pixels.shape
    if channel_names is not None and len(channel_names) != channels:
        raise ValueError(f"{len(channel_names)} channel names for {channels} channels")

    spec = oiio.ImageSpec(width, height, channels, _OUT_FORMATS[dtype])
    if channel_names is not None:
        spec.channelnames = tuple(channel_names)
    if compression is not None:
        spec.attribute("compression", compression)
    for name, value in (attributes or {}).items():
        _set_attribute(spec, name, value)

    path = os.path.abspath(path)
    _ensure_folder(os.path.dirname(path))
    try:
        with replacing(path, temp=_temp_path(path)) as temp:  # the pid in the name marks a stale temp file
            _write_pixels(temp, pixels, spec, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", path=path) from exc
