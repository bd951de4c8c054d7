"""``occlufer predict`` on videos: sampling, tracking, smoothing, annotation, broken files.

The clips are generated here: two synthetic faces pasted on a plain 320×180 frame, moving a
few pixels per frame (so tracking has something to do), written by OpenCV (mp4v in .mp4,
MJPG in .avi). Detection uses blazeface_fast where the detector is not the point (5× faster
than the default's tiles on such frames).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from occlufer.cli import build_parser, main
from occlufer.inference.photos import FaceSearch, RowWriter
from occlufer.inference.predictor import Predictor, load_predictor
from occlufer.inference.video import (
    SMOOTH,
    VIDEO_COLUMNS,
    IouTracker,
    Smoother,
    VideoReader,
    predict_video,
)
from occlufer.labels import CLASSES

W, H, SIDE, FPS, FRAMES = 320, 180, 80, 10, 30
FAST = FaceSearch(detector="blazeface_fast")


def make_clip(path: Path, frames: int = FRAMES, fourcc: str = "mp4v") -> Path:
    """Two faces (synthetic faces #1 and #4, which BlazeFace finds) moving right and down."""
    from occlufer.data.synthetic import SyntheticSpec, generate

    faces = generate(SyntheticSpec(n_per_class=1, size=160), 0)[0]  # #1 as conftest's
    small = [cv2.resize(faces[i], (SIDE, SIDE), interpolation=cv2.INTER_AREA) for i in (1, 4)]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (W, H))
    assert out.isOpened()
    for t in range(frames):
        frame = np.full((H, W), 120, np.uint8)
        for k, face in enumerate(small):
            x, y = 20 + 150 * k + 2 * t, 40 + t // 2
            frame[y:y + SIDE, x:x + SIDE] = face
        out.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    out.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.fixture(scope="module")
def predictor(model_pt: Path) -> Predictor:
    return load_predictor(model_pt)


def _run(predictor: Predictor, path: Path, **kwargs) -> tuple[list[dict], object]:
    buf = io.StringIO()
    writer = RowWriter(buf, "jsonl", predictor.classes, extra=VIDEO_COLUMNS)
    summary = predict_video(predictor, path, writer, search=kwargs.pop("search", FAST), **kwargs)
    return [json.loads(line) for line in buf.getvalue().splitlines()], summary


def test_tracker_keeps_ids_by_overlap_and_ends_lost_tracks() -> None:
    tracker = IouTracker(threshold=0.3, max_missed=2)
    assert tracker.update([(0, 0, 50, 50), (200, 0, 50, 50)]) == [0, 1]
    assert tracker.update([(205, 3, 50, 50), (4, 2, 50, 50)]) == [1, 0]  # order is no id
    assert tracker.update([(8, 4, 50, 50)]) == [0]  # 1 missed once
    assert tracker.update([]) == []                 # 1 twice, 0 once
    assert tracker.update([(210, 5, 50, 50), (9, 4, 50, 50)]) == [1, 0]  # still live
    for _ in range(3):
        tracker.update([])
    assert tracker.update([(9, 4, 50, 50)]) == [2]  # 0 was lost: a new track
    assert tracker.update([(9, 4, 50, 50), (9, 4, 50, 50)]) == [2, 3]  # one track per face


def test_smoother_is_an_exponential_moving_average_per_track() -> None:
    ema = Smoother(0.75)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert ema(0, a).tolist() == [1, 0]
    assert ema(0, b).tolist() == [0.75, 0.25]
    assert ema(1, b).tolist() == [0, 1]  # tracks do not mix
    assert ema(0, b).tolist() == pytest.approx([0.5625, 0.4375])
    assert Smoother(0)(0, a) is a
    from occlufer.errors import OccluferError

    with pytest.raises(OccluferError, match="not in"):
        Smoother(1.0)


def test_every_frame_two_tracks_follow_the_faces(clip: Path, predictor: Predictor) -> None:
    rows, summary = _run(predictor, clip, every=1, smooth=0)
    assert summary.line() == (f"1 videos, {FRAMES} frames analysed of {FRAMES}, "
                              f"{2 * FRAMES} faces in 2 tracks, 0 errors (0 frames without a "
                              "face)")
    assert all(r["status"] == "ok" for r in rows) and len(rows) == 2 * FRAMES
    for track, start in ((0, 20), (1, 170)):  # left face, right face
        mine = [r for r in rows if r["track"] == track]
        assert [r["frame"] for r in mine] == list(range(FRAMES))
        assert [r["time_s"] for r in mine] == [round(t / FPS, 3) for t in range(FRAMES)]
        centres = np.array([r["box"][0] + r["box"][2] / 2 for r in mine])
        np.testing.assert_allclose(centres, start + SIDE / 2 + 2 * np.arange(FRAMES), atol=8)


def test_every_n_samples_frames_and_smoothing_is_the_moving_average(
        clip: Path, predictor: Predictor) -> None:
    raw, summary = _run(predictor, clip, every=3, smooth=0)
    assert (summary.frames, summary.decoded) == (10, FRAMES)
    assert sorted({r["frame"] for r in raw}) == list(range(0, FRAMES, 3))
    smooth, _ = _run(predictor, clip, every=3, smooth=0.8)
    assert [(r["frame"], r["track"], r["box"]) for r in smooth] == [
        (r["frame"], r["track"], r["box"]) for r in raw]
    for track in (0, 1):
        p = np.array([[r["probabilities"][c] for c in CLASSES] for r in raw
                      if r["track"] == track])
        s = np.array([[r["probabilities"][c] for c in CLASSES] for r in smooth
                      if r["track"] == track])
        np.testing.assert_allclose(s[0], p[0], atol=1e-6)
        np.testing.assert_allclose(s[1:], 0.8 * s[:-1] + 0.2 * p[1:], atol=1e-6)
        np.testing.assert_allclose(s.sum(1), 1, atol=1e-5)
        # flicker: the smoothed sequence moves less from frame to frame
        assert np.abs(np.diff(s, axis=0)).sum() < np.abs(np.diff(p, axis=0)).sum()
        assert [r["label"] for r in smooth if r["track"] == track] == [
            CLASSES[i] for i in s.argmax(1)]


def test_no_detect_takes_each_frames_centred_square(clip: Path, predictor: Predictor) -> None:
    rows, _ = _run(predictor, clip, every=10, search=FaceSearch(detect=False))
    assert [(r["frame"], r["track"], r["box"], r["status"]) for r in rows] == [
        (f, 0, [(W - H) // 2, 0, H, H], "ok") for f in (0, 10, 20)]


def test_annotate_writes_every_frame_with_boxes(clip: Path, predictor: Predictor,
                                                tmp_path: Path) -> None:
    out = tmp_path / "sub" / "annotated.avi"
    _, summary = _run(predictor, clip, every=4, annotate=out)
    assert summary.annotated == FRAMES and summary.frames == 8
    reader = VideoReader(out)
    assert reader.size == (W, H) and reader.fps == FPS
    frames = [image for _, image, _ in reader.frames()]
    assert len(frames) == FRAMES
    source = [image for _, image, _ in VideoReader(clip).frames()]
    for drawn, plain in zip(frames, source, strict=True):  # coloured boxes on a gray video
        chroma = np.ptp(drawn.astype(int), axis=2)
        assert (chroma > 80).sum() > 200 and np.ptp(plain.astype(int), axis=2).max() < 40


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty"])
def test_a_video_that_cannot_be_opened_is_one_error_row(
        kind: str, clip: Path, predictor: Predictor, tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    data = clip.read_bytes()
    bad = tmp_path / f"{kind}.mp4"
    bad.write_bytes({"truncated": data[:len(data) // 2],  # mp4v: the index is at the end
                     "garbage": np.random.default_rng(0).bytes(4096), "empty": b""}[kind])
    capfd.readouterr()
    rows, summary = _run(predictor, bad)
    assert [(r["status"], r["frame"], r["track"], r["box"]) for r in rows] == [
        ("error", None, None, None)]
    assert rows[0]["error"].startswith("empty: 0 bytes" if kind == "empty" else "unreadable: ")
    assert (summary.errors, summary.frames) == (1, 0)
    err = capfd.readouterr().err  # one line, and none of FFmpeg's ("moov atom not found")
    assert err == f"predict: {bad}: {rows[0]['error']}\n"


def test_a_video_cut_short_keeps_its_frames_then_an_error_row(
        predictor: Predictor, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    whole = make_clip(tmp_path / "whole.avi", frames=20, fourcc="MJPG")  # index first
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) // 2])
    capfd.readouterr()
    rows, summary = _run(predictor, cut, every=2)
    *ok, last = rows
    assert ok and all(r["status"] == "ok" for r in ok)
    stop = summary.decoded
    assert 0 < stop < 20 and last["frame"] == stop and last["status"] == "error"
    assert last["error"] == (f"truncated: decoding stopped after {stop} of 20 frames (the file "
                             "is cut short or damaged)")
    assert capfd.readouterr().err == f"predict: {cut}: {last['error']}\n"


def test_cli_photos_and_a_video_in_one_table(clip: Path, model_pt: Path, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    from tests.inference.conftest import encode, face_photo

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(face_photo(), "JPEG", quality=95))
    broken = tmp_path / "broken.mov"
    broken.write_bytes(b"\x00\x00\x00\x18ftypqt  " + bytes(500))
    out, annotated = tmp_path / "rows.csv", tmp_path / "annotated.mp4"
    assert main(["predict", str(photo), str(clip), "--out", str(out), "--model", str(model_pt),
                 "--every", "3", "--annotate", str(annotated), "--workers", "1"]) == 0
    lines = capfd.readouterr().out.strip().splitlines()
    assert lines[-2] == f"predict: 1 images, 1 faces, 0 errors (0 without a face) -> {out}"
    assert lines[-1].startswith(f"predict: 1 videos, 10 frames analysed of {FRAMES}, 20 faces "
                                "in 2 tracks, 0 errors (0 frames without a face); ")
    assert lines[-1].endswith(f" frames/s -> {out}; {FRAMES} frames annotated -> {annotated}")
    header, *rows = list(csv.reader(out.open()))
    assert header[:5] == ["path", *VIDEO_COLUMNS, "face"] and header[-7:] == list(CLASSES)
    table = [dict(zip(header, r, strict=True)) for r in rows]
    assert [(r["frame"], r["track"]) for r in table[:1]] == [("", "")]  # the photo
    video = table[1:]
    assert len(video) == 20 and {r["track"] for r in video} == {"0", "1"}
    assert [r["frame"] for r in video[::2]] == [str(f) for f in range(0, FRAMES, 3)]
    assert video[2]["time_s"] == "0.3"

    # a broken video among others: its error row, one line on stderr, exit 0 as for photos
    assert main(["predict", str(broken), str(clip), "--out", str(out), "--model", str(model_pt),
                 "--every", "10", "--smooth", "0"]) == 0
    captured = capfd.readouterr()
    assert captured.err.strip().splitlines() == [
        f"predict: {broken}: unreadable: not a video OpenCV can decode (damaged, cut short, or "
        "another kind of file)"]
    assert "1 errors" in captured.out.strip().splitlines()[-1]
    rows = list(csv.DictReader(out.open()))
    assert [(r["status"], r["frame"]) for r in rows] == [("error", "")] + [("ok", "0")] * 2 + [
        ("ok", "10")] * 2 + [("ok", "20")] * 2


def test_cli_video_argument_errors(clip: Path, model_pt: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    base = ["predict", "--model", str(model_pt), "--out", str(tmp_path / "x.csv")]
    assert main([*base, str(clip), str(clip), "--annotate", str(tmp_path / "a.mp4")]) == 2
    assert "--annotate writes one video; 2 videos given" in capsys.readouterr().err
    assert main([*base, str(clip), "--annotate", str(tmp_path / "a.gif")]) == 2
    assert "cannot write a .gif video" in capsys.readouterr().err
    assert main([*base, str(clip), "--annotate", str(clip)]) == 2
    assert "is an input video" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "missing.mp4")]) == 2  # as a missing photo
    assert "missing.mp4: no such file or folder" in capsys.readouterr().err
    defaults = build_parser().parse_args(["predict", "x.mp4"])
    assert (defaults.every, defaults.smooth, defaults.annotate) == (1, SMOOTH, None)
    for bad in (["--smooth", "1"], ["--smooth", "-0.1"], ["--every", "0"]):
        with pytest.raises(SystemExit) as exc:
            main([*base, str(clip), *bad])
        assert exc.value.code == 2
