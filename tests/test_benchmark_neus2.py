"""scripts/benchmark_neus2.py: its ``--tiny`` CPU mode trains neus2 and neus-facto (tinycudann-free) through
nerfstudio's Trainer on the tiny DTU scene and writes a complete, sane report; the comparison helpers."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
DTU_TINY = Path(__file__).resolve().parent / "data" / "dtu-scan65-tiny"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("benchmark_neus2")


@pytest.mark.slow
def test_tiny_benchmark_against_neus_facto(bench, tmp_path):
    stem = tmp_path / "neus2-tiny"
    argv = ["--tiny", "--data", str(DTU_TINY), "--holdout-every", "4", "--baseline", "neus-facto", "--output", str(stem)]
    assert bench.main(argv) == 0
    report = json.loads(stem.with_suffix(".json").read_text())
    assert report["provenance"]["argv"][1:] == argv and report["provenance"]["git_commit"] is not None
    assert report["settings"]["max_steps"] == 3 and report["settings"]["mesh_resolution"] == 16
    ours, theirs = report["methods"]
    assert [ours["method"], theirs["method"]] == ["neus2", "neus-facto"]
    assert ours["status"] == theirs["status"] == "ok", (ours.get("error"), theirs.get("error"))
    assert ours["steps"] == 3 and 0 < ours["train_time_s"] and ours["first_step_s"] > 0
    assert ours["projected_15k_s"] == pytest.approx(ours["seconds_per_step"] * 15000)
    for record in (ours, theirs):
        evaluation = record["eval"]
        assert evaluation["eval_images"] == 2 and len(evaluation["per_image"]) == 2  # views 0 and 4 of 8
        assert 0 < evaluation["psnr_masked"] < 60 and 0 <= evaluation["mask_iou_common"] <= 1
        assert record["curve"] and record["curve"][-1]["step"] == record["steps"]
        assert all(math.isfinite(point["psnr_masked"]) for point in record["curve"])
    assert 0 <= ours["eval"]["mask_iou"] <= 1 and 0 < ours["eval"]["ssim"] <= 1  # neus2's own metrics
    # equal wall-clock: neus-facto stops once its training time reaches neus2's
    assert theirs["budget_s"] == ours["train_time_s"] and theirs["steps"] >= 1
    mesh = ours["mesh"]
    assert mesh["resolution"] == 16 and mesh["vertices"] > 0 and mesh["faces"] > 0 and mesh["extraction_s"] > 0
    assert 0 <= mesh["culled_vertex_fraction"] <= 1 and mesh["components"] >= 1
    assert set(report["comparison"]) >= {"psnr_masked_gap_db", "shared_probe_psnr", "time_to_same_psnr_ratio"}
    assert any("tinycudann" in note for note in report["notes"])  # the stand-in encoding is said
    text = stem.with_suffix(".md").read_text()
    assert "| neus2 | ok | 3 |" in text and "| neus-facto | ok |" in text and "Projected 15k-step time" in text


def test_time_to_same_psnr(bench):
    ours = {"curve": [{"train_time_s": 1.0, "psnr_masked": 20.0}, {"train_time_s": 2.0, "psnr_masked": 30.0}],
            "eval": {"psnr_masked": 29.0}}
    theirs = {"curve": [{"train_time_s": 1.0, "psnr_masked": 15.0}, {"train_time_s": 2.0, "psnr_masked": 22.0}],
              "eval": {"psnr_masked": 21.5}}
    result = bench.compare(ours, theirs)
    assert result["shared_probe_psnr"] == 22.0 and result["psnr_masked_gap_db"] == pytest.approx(7.5)
    assert result["neus2_time_to_shared_s"] == 2.0 and result["neus_facto_time_to_shared_s"] == 2.0
    assert result["time_to_same_psnr_ratio"] == 1.0
    theirs["curve"][0]["train_time_s"] = 0.0  # a probe right after the untimed first step: no ratio
    theirs["curve"][-1]["psnr_masked"] = 15.0
    assert bench.compare(ours, theirs)["time_to_same_psnr_ratio"] is None


def test_mesh_components_counts_floaters(bench):
    # two triangles sharing an edge, plus a detached one; vertex 7 unused
    faces = np.array([[0, 1, 2], [1, 2, 3], [4, 5, 6]])
    result = bench.mesh_components(faces, 8)
    assert result["components"] == 2 and result["largest_component_fraction"] == pytest.approx(4 / 7)
    assert bench.mesh_components(np.zeros((0, 3), dtype=int), 0)["components"] == 0


def test_eval_views_flag_defaults_to_neus2s(bench, tmp_path):
    args = bench.parse_args(["--tiny", "--eval-views", "--output", str(tmp_path / "x")])
    assert tuple(args.eval_views) == bench.NEUS2_EVAL_VIEWS and args.device == "cpu"
    assert args.scratch_dir == tmp_path / "x-runs"
