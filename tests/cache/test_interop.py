"""A store opens in xarray (and so dask): every array carries its axes' names (issue 15, item 6)."""

import numpy as np
import pytest
from conftest import tiny_extract_config

from teachcache.cache.schema import dimension_names
from teachcache.stages.extract.config import TextEncoderConfig
from teachcache.stages.extract.run import run_extraction
from teachcache.stages.teachers.config import TeacherConfig

xr = pytest.importorskip("xarray")


def test_dimension_names_follow_the_schema():
    assert dimension_names("frames/clip", "videos", 2) == ("video", "frame", "dim_clip")
    assert dimension_names("tokens/clip", "captions", 2) == ("caption", "word_clip", "dim_clip")
    assert dimension_names("denoise/rank", "captions", 0) == ("caption",)
    assert dimension_names("keyframes", "videos", 3) == ("video", "y", "x", "rgb")


def test_every_group_of_a_store_opens_in_xarray(tiny_data, tmp_path):
    cfg = tiny_extract_config(tiny_data, tmp_path / "s")
    cfg.text_encoders = {"clip": TextEncoderConfig(tokens=8)}
    cfg.teachers = {"dual": TeacherConfig(name="dual"), "captions": TeacherConfig(name="captions", kind="captions")}
    run_extraction(cfg, progress=False)
    root = tmp_path / "s" / "arrays.zarr"
    frames = xr.open_zarr(root, group="frames", consolidated=False)
    assert frames["clip"].dims == ("video", "frame", "dim_clip") and frames.sizes["video"] == 8
    text = xr.open_zarr(root, group="text", consolidated=False)
    assert text["clip"].dims == ("caption", "dim_clip") and text.sizes["caption"] == 16
    for group in ("frame_mask", "tokens", "token_mask", "relevance", "bank", "bank_rows", "denoise"):
        assert xr.open_zarr(root, group=group, consolidated=False).data_vars, group
    keyframes = xr.open_zarr(root, consolidated=False)["keyframes"]
    assert keyframes.dims == ("video", "y", "x", "rgb")
    from teachcache.cache.store import Store

    with Store.open(tmp_path / "s") as store:
        np.testing.assert_array_equal(frames["clip"].values, store.read("frames/clip"))  # the same numbers, lazily through dask
