"""A bad-input corpus through one stage-one extraction, and the manifest rows that are refused.

The tests generate every bad input themselves (nothing is committed): the tiny generated
data set plus extra videos — a missing file, a zero-byte file, a truncated mp4, a text
file named .mp4, an audio-only mp4, AV1, a 1-frame video, a 4096x2160 video, a variable
frame rate — and a unicode caption. One extraction runs over all of them. A video that
cannot be decoded must be a recorded failure (its reason in ``failures.parquet``, its
mask all false, its features zero); one that can must be encoded; nothing crashes and no
store array holds NaN or inf. Empty captions, duplicate ids and paths escaping the video
root never reach stage one: ``write_manifest`` and ``prepare`` refuse them, naming the row.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REAL_CLIPS, tiny_extract_config

from teachcache.cache.manifest import ManifestError, read_manifest, write_manifest
from teachcache.cache.store import Store
from teachcache.pipeline.datasets.common import AnnotationError
from teachcache.pipeline.prepare import PrepareConfig, prepare
from teachcache.stages.extract.run import run_extraction

UNICODE_CAPTION = "un chat 🐱 qui dort — 猫"
SMALL = (64, 48)  # width, height of the generated small videos


# ----- generators -------------------------------------------------------------------------
def _write_h264(path: Path, pts_ms: list[int], size: tuple[int, int] = SMALL, rate: int | None = 4) -> None:
    """An H.264 mp4 whose frames carry the given presentation times (milliseconds)."""
    import av

    width, height = size
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for i, pts in enumerate(pts_ms):
            image = np.full((height, width, 3), (40 + 25 * i) % 256, np.uint8)
            image[: height // 2, : width // 2] = 230  # some structure, so features are not all alike
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _write_audio_only(path: Path) -> None:
    """An mp4 with one AAC audio stream and no video stream (1.3 s of a tone)."""
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        for k in range(20):
            samples = (0.3 * np.sin(np.arange(k * 1024, (k + 1) * 1024) / 5.0)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


AV1_ENCODERS = ("libaom-av1", "libsvtav1", "av1")

AV1_WRITER = """
import sys, av, numpy as np

with av.open(sys.argv[1], "w", format="mp4") as out:
    stream = out.add_stream(sys.argv[2], rate=2)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(6):
        image = np.full((48, 64, 3), 40 * i, np.uint8)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    out.mux(stream.encode(None))
"""


def _av1_encoder() -> str | None:
    import av

    for name in AV1_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:  # this FFmpeg build lacks that encoder
            pass
        else:
            return name
    return None


def _write_av1(path: Path, encoder: str) -> None:
    # in a child process, as in test_decode.py: SVT-AV1 leaves state behind that stalls
    # other native libraries of the process that used it
    subprocess.run([sys.executable, "-c", AV1_WRITER, str(path), encoder], check=True, capture_output=True, timeout=120)


# ----- the corpus -------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One extra video: how it is made, its split, and what stage one must make of it:
    ``reasons`` (substrings of the recorded failure reason) or ``valid`` frames."""

    make: Callable[[Path], None]
    split: str
    reasons: tuple[str, ...] = ()
    valid: int | None = None

    @property
    def fails(self) -> bool:
        return bool(self.reasons)


CASES: dict[str, Case] = {
    "missing": Case(lambda p: None, "train", reasons=("missing file",)),
    "zero_bytes": Case(lambda p: p.write_bytes(b""), "train", reasons=("empty file (0 bytes)",)),
    "truncated": Case(lambda p: p.write_bytes((REAL_CLIPS / "tav_car-turn.mp4").read_bytes()[:3000]), "test", reasons=("decord:", "pyav: ", "Invalid data found")),
    "text_as_mp4": Case(lambda p: p.write_text("this is not a video\n" * 100), "test", reasons=("decord:", "pyav: ", "Invalid data found")),
    "audio_only": Case(_write_audio_only, "train", reasons=("cannot find video stream", "no video stream")),
    # decodable inputs: stage one must encode them, not record them
    "one_frame": Case(lambda p: _write_h264(p, [0]), "train", valid=1),
    # clip4clip keeps the first frame of every second: 2 frames at 4 fps -> frame 0 only
    "large_4096x2160": Case(lambda p: _write_h264(p, [0, 250], size=(4096, 2160)), "test", valid=1),
    # 10 frames at irregular times (avg 2.4 fps -> every 2nd frame): sampled by frame count
    "variable_rate": Case(lambda p: _write_h264(p, [0, 100, 150, 900, 1000, 2500, 2600, 4000, 4100, 4150], rate=None), "train", valid=5),
    # decord 0.6.0 cannot open AV1: PyAV decodes it (6 frames at 2 fps -> 3 seconds)
    "av1": Case(lambda p: _write_av1(p, _av1_encoder()), "test", valid=3),
}
FAILING = sorted(k for k, c in CASES.items() if c.fails)
DECODABLE = sorted(k for k, c in CASES.items() if not c.fails)


@dataclass
class Extracted:
    """The outcome of the one extraction over the corpus, read back from the store."""

    store: Path
    summary: object
    ids: list[str]
    failures: dict[str, dict]
    arrays: dict[str, np.ndarray]
    captions: list[dict]
    present: set[str]  # the extra videos that are in the corpus (AV1 may be missing)
    json_files: list[Path]


@pytest.fixture(scope="module")
def corpus(tiny_data, tmp_path_factory) -> Extracted:
    """The tiny data set plus every extra video of CASES (and a unicode caption), extracted once."""
    data = tmp_path_factory.mktemp("bad_corpus") / "data"
    shutil.copytree(tiny_data, data)
    (data / "bad").mkdir()
    manifest = read_manifest(data)
    videos, captions = manifest.videos.to_pylist(), manifest.captions.to_pylist()
    av1 = _av1_encoder()
    present = set()
    for name, case in CASES.items():
        if name == "av1" and av1 is None:
            continue  # only this case is skipped (test_a_decodable_odd_video_is_encoded_not_recorded[av1])
        case.make(data / "bad" / f"{name}.mp4")
        present.add(name)
        videos.append({"video_id": f"bad_{name}", "path": f"bad/{name}.mp4", "split": case.split})
        captions.append({"caption_id": f"bad_{name}#0", "video_id": f"bad_{name}", "text": f"the {name.replace('_', ' ')} case", "split": case.split})
    captions.append({"caption_id": "bad_one_frame#unicode", "video_id": "bad_one_frame", "text": UNICODE_CAPTION, "split": "train"})
    write_manifest(data, videos, captions)
    _check_the_corpus_is_what_it_claims(data / "bad", present)

    store = data.parent / "store"
    summary = run_extraction(tiny_extract_config(data, store), progress=False)
    with Store.open(store) as s:
        result = Extracted(
            store=store,
            summary=summary,
            ids=s.videos().column("video_id").to_pylist(),
            failures={f["video_id"]: f for f in s.failures().to_pylist()},
            arrays={a.name: s.read(a.name) for a in s.arrays},
            captions=s.captions().to_pylist(),
            present=present,
            json_files=sorted(store.rglob("*.json")),
        )
    return result


def _video_streams(path: Path) -> list[tuple[str, list[float]]]:
    """(codec, frame times in seconds) of each video stream of a file."""
    import av

    with av.open(str(path)) as container:
        return [(stream.codec_context.name, [float(f.time) for f in container.decode(stream)]) for stream in container.streams.video]


def _check_the_corpus_is_what_it_claims(folder: Path, present: set[str]) -> None:
    """Guards on the generated inputs, so a case cannot silently turn into an easy one."""
    assert _video_streams(folder / "audio_only.mp4") == []
    ((_, times),) = _video_streams(folder / "variable_rate.mp4")
    assert len(set(np.round(np.diff(times), 3))) > 2, times  # irregular frame intervals
    assert len(_video_streams(folder / "one_frame.mp4")[0][1]) == 1
    if "av1" in present:
        assert "av1" in _video_streams(folder / "av1.mp4")[0][0]


def _need(corpus: Extracted, name: str) -> None:
    if name not in corpus.present:
        pytest.skip(f"no AV1 encoder in this PyAV build (tried {AV1_ENCODERS})")


# ----- stage one over the corpus ----------------------------------------------------------
@pytest.mark.slow  # the corpus of odd videos through one extraction
def test_the_run_completes_and_counts_exactly_the_undecodable_videos(corpus):
    assert corpus.summary.failed == len(FAILING)
    assert f"({len(FAILING)} failed)" in corpus.summary.line()
    assert set(corpus.failures) == {f"bad_{name}" for name in FAILING}
    assert Store.open(corpus.store).complete


@pytest.mark.parametrize("name", FAILING)
@pytest.mark.slow  # the corpus of odd videos through one extraction
def test_an_undecodable_video_is_recorded_with_its_reason_and_masked_out(corpus, name):
    failure = corpus.failures[f"bad_{name}"]
    assert failure["stage"] == "decode"
    for words in CASES[name].reasons:
        assert words in failure["reason"], failure["reason"]
    if name in ("missing", "zero_bytes"):  # no decoder can help: the reason is given once, not per backend
        assert failure["reason"] == CASES[name].reasons[0]
    row = corpus.ids.index(f"bad_{name}")
    assert not corpus.arrays["frame_mask/clip"][row].any()
    assert np.all(corpus.arrays["frames/clip"][row] == 0)
    own = [i for i, c in enumerate(corpus.captions) if c["video_index"] == row]
    assert own and np.all(corpus.arrays["relevance/dual"][own] == 0)


@pytest.mark.parametrize("name", DECODABLE)
@pytest.mark.slow  # the corpus of odd videos through one extraction
def test_a_decodable_odd_video_is_encoded_not_recorded(corpus, name):
    _need(corpus, name)
    vid = f"bad_{name}"
    assert vid not in corpus.failures
    row = corpus.ids.index(vid)
    mask, frames = corpus.arrays["frame_mask/clip"][row], corpus.arrays["frames/clip"][row]
    assert mask.sum() == CASES[name].valid and mask[: CASES[name].valid].all()
    assert np.all(np.abs(frames[mask].astype(np.float32)).sum(-1) > 0)
    assert np.isfinite(frames.astype(np.float32)).all() and np.all(frames[~mask] == 0)


@pytest.mark.slow  # the corpus of odd videos through one extraction
def test_the_original_videos_are_still_encoded(corpus):
    mask, frames = corpus.arrays["frame_mask/clip"], corpus.arrays["frames/clip"]
    for row, vid in enumerate(corpus.ids):
        if not vid.startswith("bad_"):
            assert mask[row].sum() >= 8, vid  # the synthetic videos last 8-14 s
            assert np.all(np.abs(frames[row][mask[row]].astype(np.float32)).sum(-1) > 0), vid


@pytest.mark.slow  # the corpus of odd videos through one extraction
def test_a_unicode_caption_is_kept_verbatim_and_encoded_finitely(corpus):
    (row,) = [i for i, c in enumerate(corpus.captions) if c["caption_id"] == "bad_one_frame#unicode"]
    assert corpus.captions[row]["text"] == UNICODE_CAPTION
    text = corpus.arrays["text/clip"].astype(np.float32)
    assert np.isfinite(text[row]).all() and np.linalg.norm(text[row]) > 0
    # a caption of its own, not collapsed onto the other caption of the same video
    (other,) = [i for i, c in enumerate(corpus.captions) if c["caption_id"] == "bad_one_frame#0"]
    assert not np.allclose(text[row], text[other])
    relevance = corpus.arrays["relevance/dual"][row].astype(np.float32)
    assert np.isfinite(relevance).all() and relevance[0] != 0  # scored against the one valid frame


@pytest.mark.slow  # the corpus of odd videos through one extraction
def test_no_float_array_or_record_in_the_store_holds_nan_or_inf(corpus):
    checked = []
    for name, data in corpus.arrays.items():
        if not np.issubdtype(data.dtype, np.floating):
            continue
        values = data.astype(np.float32)
        if name == "denoise/score":
            # documented contract: NaN marks captions outside the usable train split (other splits, failed videos)
            train = np.array([c["split"] == "train" and c["video_id"] not in corpus.failures for c in corpus.captions])
            assert np.isfinite(values[train]).all() and np.isnan(values[~train]).all()
        else:
            assert np.isfinite(values).all(), name
        checked.append(name)
    assert {"frames/clip", "text/clip", "relevance/dual", "denoise/score"} <= set(checked)

    def refuse(constant):
        raise AssertionError(f"{constant} in a stored JSON record")

    assert corpus.json_files  # the teacher's record (metrics), the store's markers
    for path in corpus.json_files:
        json.loads(path.read_text(), parse_constant=refuse)


# ----- refused before stage one -----------------------------------------------------------
def _good_rows():
    videos = [{"video_id": "v0", "path": "v0.mp4", "split": "train"}, {"video_id": "v1", "path": "v1.mp4", "split": "test"}]
    captions = [
        {"caption_id": "c0", "video_id": "v0", "text": "a cat", "split": "train"},
        {"caption_id": "c1", "video_id": "v1", "text": UNICODE_CAPTION, "split": "test"},
    ]
    return videos, captions


def _break_video(videos, captions, **changes):
    videos[1].update(changes)


def _break_caption(videos, captions, **changes):
    captions[1].update(changes)


@pytest.mark.parametrize(
    "breaks, message",
    [
        (lambda v, c: _break_caption(v, c, text=""), r"captions row 1 \(caption_id='c1'\): empty caption text"),
        (lambda v, c: _break_caption(v, c, text=" \t\n"), r"captions row 1 \(caption_id='c1'\): empty caption text"),
        (lambda v, c: _break_caption(v, c, caption_id="c0"), r"captions row 1: duplicate caption_id 'c0' \(first at row 0\)"),
        (lambda v, c: _break_video(v, c, video_id="v0"), r"videos row 1: duplicate video_id 'v0' \(first at row 0\)"),
        (lambda v, c: _break_video(v, c, path="../x.mp4"), r"videos row 1 \(video_id='v1'\): path '../x.mp4' escapes the video root"),
        (lambda v, c: _break_video(v, c, path="sub/../../x.mp4"), r"videos row 1 \(video_id='v1'\): path 'sub/../../x.mp4' escapes"),
        (lambda v, c: _break_video(v, c, path="/etc/passwd"), r"videos row 1 \(video_id='v1'\): path '/etc/passwd' is absolute"),
    ],
    ids=["empty-caption", "blank-caption", "duplicate-caption-id", "duplicate-video-id", "path-escapes-root", "path-escapes-via-subfolder", "absolute-path"],
)
def test_write_manifest_refuses_a_bad_row_naming_it_and_keeps_the_old_manifests(tmp_path, breaks, message):
    videos, captions = _good_rows()
    write_manifest(tmp_path, videos, captions)
    before = {n: (tmp_path / n).read_bytes() for n in ("videos.parquet", "captions.parquet")}
    breaks(videos, captions)
    with pytest.raises(ManifestError, match=message):
        write_manifest(tmp_path, videos, captions)
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert read_manifest(tmp_path).captions.column("text").to_pylist() == ["a cat", UNICODE_CAPTION]


def _edit_column(path: Path, column: str, row: int, value: str) -> None:
    """Change one cell of a manifest behind write_manifest's back (a hand-edited file)."""
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[row] = value
    pq.write_table(table.set_column(table.schema.get_field_index(column), column, [values]), path)


@pytest.mark.parametrize(
    "file, column, value, message",
    [
        ("videos.parquet", "path", "../../outside.mp4", r"videos row 3 \(video_id='.+'\): path '../../outside.mp4' escapes the video root"),
        ("videos.parquet", "video_id", None, r"videos row 3: duplicate video_id '.+' \(first at row 0\)"),
        ("captions.parquet", "text", "", r"captions row 3 \(caption_id='.+'\): empty caption text"),
        ("captions.parquet", "caption_id", None, r"captions row 3: duplicate caption_id '.+' \(first at row 0\)"),
    ],
    ids=["path-escapes-root", "duplicate-video-id", "empty-caption", "duplicate-caption-id"],
)
def test_stage_one_refuses_a_hand_edited_bad_manifest_row_before_any_work(data_copy, tmp_path, file, column, value, message):
    if value is None:  # duplicate: copy row 0's id into row 3
        value = pq.read_table(data_copy / file).column(column)[0].as_py()
    _edit_column(data_copy / file, column, 3, value)
    with pytest.raises(ManifestError, match=message):
        run_extraction(tiny_extract_config(data_copy, tmp_path / "store"), progress=False)
    assert not (tmp_path / "store").exists()


def _custom(tmp_path: Path, rows: list[str]) -> PrepareConfig:
    root = tmp_path / "ann"
    (root / "videos").mkdir(parents=True)
    for name in ("a", "b"):
        _write_h264(root / "videos" / f"{name}.mp4", [0, 250])
    (root / "captions.csv").write_text("video,caption,split\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return PrepareConfig(dataset="custom", root=str(root), videos=str(root / "videos"))


def test_prepare_drops_and_counts_empty_captions_and_keeps_unicode_ones(tmp_path):
    cfg = _custom(tmp_path, ["a.mp4,a cat,train", 'a.mp4,"   ",train', f"b.mp4,{UNICODE_CAPTION},test", "b.mp4,,test"])
    manifest, report = prepare(cfg, tmp_path / "data")
    assert report.dropped_captions == 2 and "2 empty captions left out" in report.line()
    assert manifest.captions.column("text").to_pylist() == ["a cat", UNICODE_CAPTION]
    assert read_manifest(tmp_path / "data").captions.column("text").to_pylist() == ["a cat", UNICODE_CAPTION]


@pytest.mark.parametrize(
    "rows, message",
    [
        (["a.mp4,a cat,train", "../x.mp4,a dog,train"], r"captions.csv row 2: video path '../x.mp4' must be relative to the video folder and stay inside it"),
        (["a.mp4,a cat,train", "/tmp/x.mp4,a dog,train"], r"captions.csv row 2: video path '/tmp/x.mp4' must be relative"),
        (["a.mp4,a cat,train", "a.mp4,a dog,test"], r"captions.csv row 2: video 'a' was given with other path, split"),
    ],
    ids=["path-escapes-root", "absolute-path", "duplicate-video-id-disagreeing"],
)
def test_prepare_refuses_a_bad_custom_row_naming_it(tmp_path, rows, message):
    cfg = _custom(tmp_path, rows)
    with pytest.raises(AnnotationError, match=message):
        prepare(cfg, tmp_path / "data")
    assert not (tmp_path / "data" / "videos.parquet").exists()
