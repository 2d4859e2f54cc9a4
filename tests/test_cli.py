"""The installed CLIs: every method is listed, bad input stops with one clear error naming the file."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR, make_blender_subset
from tests.training import run_cli

# Every method pyproject.toml registers (a regex, not tomllib: that needs Python 3.11 and we support 3.10).
_SECTION = (Path(__file__).parents[1] / "pyproject.toml").read_text().split(
    '[project.entry-points."nerfstudio.method_configs"]')[1].split("\n[")[0]
METHODS = re.findall(r"^([\w.-]+)\s*=", _SECTION, flags=re.M)
_PARSER_SECTION = (Path(__file__).parents[1] / "pyproject.toml").read_text().split(
    '[project.entry-points."nerfstudio.dataparser_configs"]')[1].split("\n[")[0]
DATAPARSERS = re.findall(r"^([\w.-]+)\s*=", _PARSER_SECTION, flags=re.M)


@pytest.mark.slow
def test_ns_train_help_lists_every_method():
    result = run_cli(["ns-train", "--help"])
    assert result.returncode == 0, result.stderr[-2000:]
    for method in METHODS:
        assert method in result.stdout, f"{method} missing from ns-train --help"


@pytest.mark.slow
def test_every_dataparser_is_a_subcommand():
    """A method whose default dataparser is not registered makes ns-train exit; ours are all registered."""
    assert "ng-nerfstudio-data" in DATAPARSERS
    result = run_cli(["ns-train", "ng-splatfacto", "--help"])
    assert result.returncode == 0, result.stderr[-2000:]
    for name in DATAPARSERS:
        assert name in result.stdout, f"{name} missing from ns-train ng-splatfacto --help"


def _break_missing_image(scene):
    (scene / "train" / "r_1.png").unlink()
    return "r_1.png"


def _break_json(scene):
    path = scene / "transforms_train.json"
    path.write_text(path.read_text()[:-40])
    return "transforms_train.json"


def _break_pose(scene):
    path = scene / "transforms_train.json"
    meta = json.loads(path.read_text())
    meta["frames"][2]["transform_matrix"][0][3] = math.nan
    path.write_text(json.dumps(meta))  # json writes NaN, which json.loads accepts
    return "transforms_train.json"


@pytest.mark.slow
@pytest.mark.parametrize("breaker", [_break_missing_image, _break_json, _break_pose])
def test_bad_input_gives_one_clear_error(breaker, tmp_path):
    scene = make_blender_subset(DATA_DIR / "lego-100", tmp_path / "lego", {"train": 4, "val": 1, "test": 1})
    named_file = breaker(scene)
    result = run_cli([
        "ns-train", "ngpc-hashgrid", "--data", str(scene), "--max-num-iterations", "1",
        "--vis", "tensorboard", "--output-dir", str(tmp_path / "out"), "--machine.device-type", "cpu",
    ])
    assert result.returncode != 0
    last_line = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert "DataValidationError" in last_line and named_file in last_line, result.stderr[-2000:]
