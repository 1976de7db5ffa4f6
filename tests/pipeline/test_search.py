"""`teachcache search`: keyframes kept by stage one, the student index, the hits and their page."""

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from teachcache.cache.store import Store
from teachcache.pipeline.cli import main
from teachcache.pipeline.search import INDEX_FILE, SearchIndex


def test_stage_one_keeps_one_small_keyframe_per_video(cli_config, tmp_path):
    with Store.open(tmp_path / "store") as store:
        frames = store.read("keyframes")
        mask = store.read("frame_mask/clip")
    assert frames.shape == (8, 96, 96, 3) and frames.dtype == np.uint8
    assert all(frames[i].std() > 0 for i in range(8) if mask[i].any())  # a real picture, not a blank


def test_search_scores_every_video_with_the_students_vectors(trained_run, tmp_path):
    index = SearchIndex(trained_run)
    try:
        caption = index.store.captions().to_pylist()[5]
        hits, seconds = index.search(caption["text"], k=8)
        assert [h.rank for h in hits] == list(range(1, 9)) and seconds < 5
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        # the query's vector is the cached one of that caption (same text encoder): same scores
        with torch.no_grad():
            cached = torch.from_numpy(index.store.read("text/clip", slice(5, 6)))
            expected = (index.vectors @ index.student.encode_text(cached)[0].float()).numpy()
        for hit in hits:
            assert hit.score == pytest.approx(float(expected[hit.row]), abs=2e-3)
        test_hits, _ = index.search(caption["text"], k=8, split="test")
        assert {h.split for h in test_hits} == {"test"} and len(test_hits) == 2
        with pytest.raises(ValueError, match="query is empty"):
            index.search("  ")
    finally:
        index.close()
    assert (trained_run / INDEX_FILE).is_file()


def test_cli_prints_hits_and_writes_a_page_with_their_keyframes(trained_run, tmp_path):
    page = tmp_path / "hits.html"
    result = CliRunner().invoke(main, ["search", "--run", str(trained_run), "a red square slides left", "a blue circle", "-k", "3", "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert result.output.count("top 3 of 8 videos (all splits) in") == 2
    one_split = CliRunner().invoke(main, ["search", "--run", str(trained_run), "a red square", "-k", "2", "--split", "test"])
    assert one_split.exit_code == 0 and "top 2 of 2 test videos in" in one_split.output
    assert len(re.findall(r"^\s+[123]\.\s+-?\d\.\d{3}\s+\S+\s+\[(train|val|test)\]", result.output, re.M)) == 6
    text = page.read_text()
    assert text.count('src="data:image/png;base64,') == 6 and "a red square slides left" in text
    missing = CliRunner().invoke(main, ["search", "--run", str(tmp_path / "nowhere"), "x"])
    assert missing.exit_code == 2 and "finished `teachcache train` run" in missing.output
