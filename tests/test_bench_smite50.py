"""The SMITE-50 layout as a `smite bench --data` input, read as the authors' evaluation reads it.

Facts from the authors' repository alimohammadiamirhossein/smite (file:line cited per test).
"""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from smite import bench_smite50 as s50
from smite.bench import find_clips, load_clip
from smite.cli.main import main
from smite.errors import BadInputError

CHAIR = os.path.join(os.path.dirname(__file__), "data", "chair")


def _png(path, mask) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(mask, np.uint8)).save(path)


def test_frame_numbers_parse_the_bracketed_list(tmp_path):
    """utils/gt_extractor.py:53-58: the first line, the text between '[' and ']', split on ',', empty items dropped."""
    path = tmp_path / s50.FRAME_NUMBERS
    path.write_text("[0, 10, 20,]\nignored [1]\n")
    assert s50.read_frame_numbers(str(path)) == [0, 10, 20]
    path.write_text("0 10 20\n")
    with pytest.raises(BadInputError):
        s50.read_frame_numbers(str(path))


def test_part_pngs_natural_order_and_one_folder_deeper(tmp_path):
    """utils/gt_extractor.py:22 natsorts the PNGs (so '2.png' precedes '10.png': part 2 before part 10);
    :25-27 look one folder down when a frame folder holds no PNG directly."""
    for name in ("10.png", "2.png", "1.png"):
        _png(str(tmp_path / "f0" / name), np.zeros((2, 2)))
    _png(str(tmp_path / "f1" / "inner" / "a.png"), np.zeros((2, 2)))
    assert [os.path.basename(p) for p in s50.part_pngs(str(tmp_path / "f0"))] == ["1.png", "2.png", "10.png"]
    assert [os.path.basename(p) for p in s50.part_pngs(str(tmp_path / "f1"))] == ["a.png"]


def test_part_labels_threshold_and_smaller_part_wins(tmp_path):
    """utils/gt_extractor.py:32-37: grey value > 255/2 is the part (128 in, 127 out); :9-18 with :47-48:
    sorted by area, each part loses the pixels a smaller one already took, so overlaps go to the smaller."""
    big = np.zeros((4, 4), np.uint8)
    big[:, :] = 128
    big[3, 3] = 127
    small = np.zeros((4, 4), np.uint8)
    small[0, 0] = 255
    _png(str(tmp_path / "1.png"), big)
    _png(str(tmp_path / "2.png"), small)
    labels = s50.read_part_labels([str(tmp_path / "1.png"), str(tmp_path / "2.png")])
    expected = np.ones((4, 4), np.int32)
    expected[0, 0] = 2  # both claim it, part 2 is smaller
    expected[3, 3] = 0  # 127 is not above 127.5
    assert np.array_equal(labels, expected)


@pytest.mark.parametrize(("n_frames", "last_gt", "length"), [
    (100, 50, 52),   # frames 51..99 follow: 55, 54, 53 frames are no multiple of 4, 52 is
    (100, 95, 100),  # 96..99 follow: cutting after the 4th (99) leaves 100
    (100, 97, 100),  # only 98, 99 follow (not more than 3): the video is kept whole
    (101, 98, 101),  # 99, 100 follow: kept whole, 101 is no multiple of 4 (as theirs)
    (300, 100, 104),  # first cut to 288 frames; 105 no, 104 yes
])
def test_eval_length_truncates_to_a_multiple_of_4(n_frames, last_gt, length):
    """utils/setup.py:154-168: candidates are the frames after the last annotated one; with more than 3 the
    video ends at candidates[3], [2], [1], [0], the first leaving len % 4 == 0; utils/image_processing.py:311
    with scripts/common/common_inference_params.sh:3-5 (start 0, stride 1, video_length 288) read at most 288."""
    assert s50.eval_length(n_frames, [0, last_gt]) == length


def _smite50_clip(root: str, n_frames: int = 20, numbers=(0, 4, 8, 11)) -> str:
    """A SMITE-50-layout clip from the chair sample: an mp4, frames_numbers.txt, two part PNGs per frame.

    Folder names 'frame0 .. frame11' only sort right naturally (plain sorting puts frame11 before frame4).
    """
    clip = os.path.join(root, "chair50")
    os.makedirs(clip)
    first = cv2.imread(os.path.join(CHAIR, "frames", "00000.jpg"))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(os.path.join(clip, "chair50.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 24, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4 here"
    for f in range(n_frames):
        writer.write(cv2.imread(os.path.join(CHAIR, "frames", f"{f:05d}.jpg")))
    writer.release()
    with open(os.path.join(clip, s50.FRAME_NUMBERS), "w", encoding="utf-8") as handle:
        handle.write("[" + ", ".join(map(str, numbers)) + "]\n")
    for n in numbers:
        chair = np.asarray(Image.open(os.path.join(CHAIR, "masks", f"{n:05d}.png"))) > 0
        rows = np.flatnonzero(chair.any(1))
        middle = (rows[0] + rows[-1]) // 2
        top = chair.copy()
        top[middle:] = False
        _png(os.path.join(clip, f"frame{n}", "part1_top.png"), top * 255)
        _png(os.path.join(clip, f"frame{n}", "part2_bottom.png"), (chair & ~top) * 255)
    return clip


def test_smite50_clip_loads_with_the_authors_frames(tmp_path):
    """Annotations pair with frames_numbers.txt in natural folder order (utils/gt_extractor.py:62-75); the video
    of 20 frames with the last annotation at 11 is cut to 16 frames (utils/setup.py:154-168: 12..19 follow,
    cutting after 15 leaves 16)."""
    clip_dir = _smite50_clip(str(tmp_path))
    clip = load_clip(clip_dir, str(tmp_path / "work"))
    assert clip.layout == "smite50"
    assert clip.frames == list(range(16))
    assert clip.annotated == [0, 4, 8, 11]
    assert clip.names == {0: "background", 1: "part1_top", 2: "part2_bottom"}
    chair11 = np.asarray(Image.open(os.path.join(CHAIR, "masks", "00011.png"))) > 0
    labels = clip.read_gt(11)
    assert np.array_equal(labels > 0, chair11)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert find_clips(clip_dir) == [clip_dir]


def test_smite50_clip_with_a_missing_annotation_folder_is_refused(tmp_path):
    clip_dir = _smite50_clip(str(tmp_path))
    shutil.rmtree(os.path.join(clip_dir, "frame8"))
    with pytest.raises(BadInputError, match="lists 4 frames but 3"):
        load_clip(clip_dir, str(tmp_path / "work"))


def test_bench_runs_on_smite50_and_our_layout_and_reports_both_metric_sets(tmp_path, capsys):
    """`smite bench --data` over a folder holding one clip of each layout, weight-free backend: the table and
    the JSON carry our J/F/mIoU and the authors' f_measure/jaccard/mean_iou (per part incl. background)."""
    data = tmp_path / "data"
    _smite50_clip(str(data))
    ours = data / "chair_ours"
    for sub in ("frames", "masks"):
        os.makedirs(ours / sub)
        for f in range(6):
            ext = "jpg" if sub == "frames" else "png"
            shutil.copy(os.path.join(CHAIR, sub, f"{f:05d}.{ext}"), ours / sub / f"{f:05d}.{ext}")
    shutil.copy(os.path.join(CHAIR, "labels.json"), ours / "labels.json")
    out = tmp_path / "bench.json"
    assert main(["bench", "--data", str(data), "--keyframes", "1", "--quiet", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "sF" in table and "smIoU" in table
    assert "chair50" in table and "chair_ours" in table
    report = json.loads(out.read_text())
    clips = {c["clip"]: c for c in report["clips"]}
    c50, cours = clips["chair50"], clips["chair_ours"]
    assert c50["layout"] == "smite50" and c50["frames"] == 16
    assert c50["references"] == [0] and c50["scored_frames"] == 3
    assert c50["parts"] == ["part1_top", "part2_bottom"]
    assert set(c50["smite"]["iou_per_part"]) == {"background", "part1_top", "part2_bottom"}
    assert c50["smite"]["mean_iou"] == pytest.approx(np.mean(list(c50["smite"]["iou_per_part"].values())))
    assert cours["layout"] == "shared" and cours["frames"] == 6 and cours["scored_frames"] == 5
    for c in (c50, cours):
        assert 0.0 < c["J"] <= 1.0 and 0.0 < c["smite"]["f_measure"] <= 1.0
        assert 0.0 < c["smite"]["jaccard"] <= 1.0 and 0.0 < c["smite"]["mean_iou"] <= 100.0
    assert report["mean"]["smite"]["mean_iou"] == pytest.approx(
        (c50["smite"]["mean_iou"] + cours["smite"]["mean_iou"]) / 2)


def test_smite50_plate_may_be_an_image_sequence_and_one_video_is_required(tmp_path):
    """Frame number = video frame index either way; with neither frames/ nor exactly one video, a clear error."""
    clip_dir = _smite50_clip(str(tmp_path))
    os.makedirs(os.path.join(clip_dir, "frames"))
    for f in range(20):
        shutil.copy(os.path.join(CHAIR, "frames", f"{f:05d}.jpg"), os.path.join(clip_dir, "frames", f"{f:05d}.jpg"))
    clip = load_clip(clip_dir, str(tmp_path / "work"))
    assert clip.plate == os.path.join(clip_dir, "frames", "%05d.jpg")
    assert clip.frames == list(range(16)) and clip.annotated == [0, 4, 8, 11]
    shutil.rmtree(os.path.join(clip_dir, "frames"))
    shutil.copy(os.path.join(clip_dir, "chair50.mp4"), os.path.join(clip_dir, "copy.mp4"))
    with pytest.raises(BadInputError, match="exactly one video"):
        load_clip(clip_dir, str(tmp_path / "work2"))
