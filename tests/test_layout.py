"""The house's rules, checked: one namespace, every package installed, imports one way."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("cache", "stages", "pipeline")


def test_every_package_folder_is_installed_under_the_teachcache_namespace():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        "teachcache." + ".".join(path.relative_to(REPO).parts)
        for top in LAYERS
        for path in [REPO / top, *(REPO / top).rglob("*")]
        if path.is_dir() and "__pycache__" not in path.parts and any(path.glob("*.py")) | any(path.glob("*.toml")) | any(path.glob("*.json"))
    }
    assert folders == set(setuptools["packages"])
    assert setuptools["package-dir"] == {f"teachcache.{top}": top for top in LAYERS}


def test_nothing_named_cache_stages_or_pipeline_is_importable_outside_the_namespace(tmp_path):
    code = "import importlib.util as u; print([n for n in ('cache', 'stages', 'pipeline') if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def _lint_tree(tmp_path: Path) -> Path:
    """A copy of the packages laid out as installed (teachcache/cache, ...), for the static tools."""
    root = tmp_path / "tree"
    for top in LAYERS:
        shutil.copytree(REPO / top, root / "teachcache" / top, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("import-linter is not installed (make setup installs it)")
    env = {"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run([tool, "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "module, planted, broken",
    [
        ("stages/student/recipe.py", "import teachcache.stages.extract.run", "teachcache.stages.student.recipe -> teachcache.stages.extract.run"),
        ("stages/teachers/base.py", "import teachcache.stages.extract.config", "teachcache.stages.teachers.base -> teachcache.stages.extract.config"),
        ("cache/store.py", "import teachcache.stages.common.device", "teachcache.cache.store -> teachcache.stages.common.device"),
        ("stages/common/data.py", "import teachcache.pipeline.config", "teachcache.stages.common.data -> teachcache.pipeline.config"),
        ("stages/student/config.py", "import torch", "teachcache.stages.student.config -> torch"),
    ],
)
def test_the_layers_contract_passes_here_and_fails_on_a_planted_wrong_direction_import(tmp_path, module, planted, broken):
    root = _lint_tree(tmp_path)
    clean = _lint_imports(root)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    target = root / "teachcache" / module
    target.write_text(target.read_text() + f"\n{planted}  # planted\n")
    dirty = _lint_imports(root)
    assert dirty.returncode != 0 and broken in dirty.stdout, dirty.stdout
