"""Stage one gives the same bits at any CPU thread count (issue 15, item 10)."""

import numpy as np
import torch
from conftest import tiny_extract_config

from teachcache.cache.store import Store
from teachcache.stages.extract.run import run_extraction
from teachcache.stages.teachers.config import TeacherConfig

FIT = {"fit_epochs": 3, "fit_batch_size": 4, "temporal_layers": 1}


def _extract(data, store, threads: int) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = tiny_extract_config(data, store)
        cfg.teachers = {"dual": TeacherConfig(name="dual"), "xpool": TeacherConfig(name="xpool", kind="xpool", **FIT), "tt": TeacherConfig(name="tt", kind="teachtext", **FIT)}
        run_extraction(cfg, progress=False)
    finally:
        torch.set_num_threads(before)
    with Store.open(store) as opened:
        found = {a.name: opened.read(a.name) for a in opened.arrays}
        found |= {name: opened.get_file(f"heads/{name}.safetensors") for name in ("xpool", "tt")}
    return found


def test_stage_one_twice_at_one_and_two_threads_gives_equal_arrays_and_heads(tiny_data, tmp_path):
    one, two = _extract(tiny_data, tmp_path / "one", 1), _extract(tiny_data, tmp_path / "two", 2)
    assert one.keys() == two.keys() and {"relevance/xpool", "denoise/score", "xpool"} <= one.keys()
    for name in one:
        if isinstance(one[name], bytes):
            assert one[name] == two[name], name  # the fitted head's weights, byte for byte
        else:
            assert np.array_equal(one[name], two[name], equal_nan=True), name
