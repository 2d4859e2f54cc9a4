"""scripts/gpu_check.py: its CPU mode runs every stage (so it cannot rot between GPU draws), and a stage that hangs,
crashes or raises is recorded as failed while the check goes on."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module, with scripts/ on sys.path as when it runs."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("gpu_check")


def _only(directory: Path, pattern: str) -> Path:
    matches = sorted(directory.glob(pattern))
    assert len(matches) == 1, matches
    return matches[0]


def _stage(report: dict, name: str) -> dict:
    (stage,) = [s for s in report["stages"] if s["name"] == name]
    return stage


def _method(stage: dict, name: str) -> dict:
    (record,) = [r for r in stage["figures"]["methods"] if r["method"] == name]
    return record


def _check_tiny_figures(report: dict) -> None:
    environment = _stage(report, "environment")["figures"]
    assert environment["copy_bandwidth"]["gb_per_s"] > 0 and environment["matmul"]["tflops"] > 0
    correctness = _stage(report, "correctness")["figures"]
    assert correctness["source"] == "junit" and correctness["counts"]["passed"] > 0
    assert correctness["counts"]["failed"] == correctness["counts"]["error"] == 0, correctness["failures"]
    kernels = _stage(report, "kernels")["figures"]
    assert all(r["status"] == "ok" and r["points_per_s"] > 0 for r in kernels["grid"] if r["backend"] == "torch")
    assert {r["backend"]: r["status"] for r in kernels["compositing"]}["torch"] == "ok"
    summary = _stage(report, "ngpc-profile")["figures"]["summary"]
    assert set(summary) == {"torch", "triton", "fused"}
    assert all(0 < s["measured_percent"] <= 100 for s in summary["torch"].values())
    nerf, splat, dynamic = (_stage(report, name) for name in ("methods-nerf", "methods-splat", "methods-dynamic"))
    ours, instant_ngp = _method(nerf, "ngpc-hashgrid"), _method(nerf, "instant-ngp")
    assert ours["status"] == "ok" and ours["steps"] == 2 and 0 < ours["psnr"] < 60
    assert instant_ngp["status"] == "skipped" and "CUDA" in instant_ngp["reason"]  # needs CUDA: recorded, no crash
    for name in ("ng-splatfacto", "c3dgs-synthetic"):
        record = _method(splat, name)
        assert record["status"] == "ok" and record["num_gaussians"] > 0 and record["storage_mb"] > 0
        assert record["rasterizer_calls"].get("reference", 0) > 0 and not record["rasterizer_calls"].get("gsplat")
    rotor = _method(dynamic, "4d-rotor-gs")
    assert rotor["status"] == "ok" and rotor["fps"]["fps"] > 0 and rotor["fps"]["renders"] == 2
    neus2 = _stage(report, "methods-surfaces")["figures"]["neus2"]  # tiny: neus2 only (neus-facto: its own test)
    assert neus2["status"] == "ok" and neus2["steps"] == 3 and neus2["projected_15k_s"] > 0
    assert 0 < neus2["eval"]["psnr_masked"] < 60 and neus2["mesh"]["vertices"] > 0


@pytest.mark.slow
def test_cpu_mode_runs_every_stage(gpu_check, tmp_path):
    argv = ["--device", "cpu", "--tiny", "--output-dir", str(tmp_path)]
    code = gpu_check.main(argv)
    report = json.loads(_only(tmp_path, "gpu-check-cpu-*.json").read_text())
    assert [s["name"] for s in report["stages"]] == gpu_check.STAGE_NAMES
    failed = {s["name"]: s["error"] for s in report["stages"] if s["status"] != "ok"}
    assert not failed and code == 0
    for stage in report["stages"]:
        assert stage["seconds"] > 0 and stage["figures"] and stage["tables"] and stage["error"] is None
        assert (tmp_path / stage["log"]).is_file()
    prov = report["provenance"]
    assert prov["argv"][1:] == argv and prov["machine"]["device"] == "cpu" and prov["git_commit"] is not None
    assert prov["versions"]["torch"] == torch.__version__ and "gsplat" in prov["versions"]
    _check_tiny_figures(report)
    targets = {t["name"]: t for t in report["targets"]}
    assert len(targets) == 12 and all(t["verdict"] in ("n/a on cpu", "not measured") for t in targets.values())
    fused = targets["fused encoding+MLP fwd vs plain PyTorch path (hashgrid)"]
    assert fused["measured"] > 0 and fused["verdict"] == "n/a on cpu"  # a CPU figure, never a GPU verdict
    table = _only(tmp_path, "gpu-check-cpu-*.md").read_text()
    assert "## Stages" in table and "## Targets" in table and "| methods-dynamic | ok |" in table
    assert f"`{prov['command']}`" in table and "paper %" in table


def _settings(gpu_check, tmp_path: Path, name: str):
    ctx = gpu_check.StageContext(name=name, device="cpu", tiny=True, output_dir=tmp_path, data_root=tmp_path,
                                 timeout_s=30, result_path=tmp_path / f"{name}.result.json")
    (tmp_path / "logs").mkdir(exist_ok=True)
    return ctx


def _child(ctx, body: str) -> list:
    """A child that records a partial result through StageContext, then runs ``body``."""
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(SCRIPTS)!r})
        from gpu_check_context import StageContext
        ctx = StageContext.load({str(ctx.result_path.with_suffix('.settings'))!r})
        ctx.figures["measured_before"] = 1.5
        ctx.save()
        print("partial result saved", flush=True)
        {body}
    """)
    ctx.result_path.with_suffix(".settings").write_text(json.dumps(ctx.settings()))
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("body,expected", [
    ("import time; time.sleep(120)", "timed out after"),
    ("import os; os.abort()", "killed by signal SIGABRT"),
], ids=["hang", "crash"])
def test_a_hanging_or_crashing_stage_fails_alone_and_keeps_its_figures(gpu_check, tmp_path, body, expected):
    ctx = _settings(gpu_check, tmp_path, "environment")
    ctx.timeout_s = 3
    log = tmp_path / "logs" / "environment.log"
    code = gpu_check.run_child(_child(ctx, body), log, ctx.timeout_s)
    result = gpu_check.stage_result(ctx, code, 1.0, log)
    assert result["status"] == "failed" and expected in result["error"]
    assert "partial result saved" in result["error"]  # the log's tail comes with it
    assert result["figures"] == {"measured_before": 1.5} and result["log"] == "logs/environment.log"


def _raising_stage(ctx) -> None:
    ctx.figures["first"] = 1
    raise RuntimeError("compiled kernel disagrees with its reference")


def test_a_raising_stage_is_recorded_with_its_traceback(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "STAGES", (gpu_check.Stage("boom", "tests.test_gpu_check:_raising_stage", 9, 9),))
    ctx = _settings(gpu_check, tmp_path, "boom")
    settings = tmp_path / "boom.settings.json"
    settings.write_text(json.dumps(ctx.settings()))
    assert gpu_check.main(["--run-stage", str(settings)]) == 1
    result = json.loads(ctx.result_path.read_text())
    assert result["status"] == "failed" and result["figures"] == {"first": 1}
    assert "Traceback" in result["error"] and "compiled kernel disagrees" in result["error"]


def test_pytest_outcomes_are_read_from_the_log_after_a_timeout(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    runner = importlib.import_module("gpu_check_pytest")
    log = tmp_path / "pytest.log"
    log.write_text("tests/kernels/test_a.py::test_x[fp32] PASSED   [ 10%]\n"
                   "[gw1] [ 20%] FAILED tests/kernels/test_grid_encoding_triton.py::test_y[fp16] \n"
                   "tests/kernels/test_b.py::test_z SKIPPED (needs CUDA)  [ 30%]\nnoise\n")
    summary = runner.summarize(runner.read_verbose_log(log))
    assert summary["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    assert summary["compiled_kernel_failures"] == 1
    assert summary["failures"][0]["id"] == "tests/kernels/test_grid_encoding_triton.py::test_y[fp16]"


def test_export_data_copies_trimmed_scenes(gpu_check, tmp_path):
    data = tmp_path / "data"
    (data / "blender").mkdir(parents=True)
    (data / "dnerf").mkdir()
    (data / "blender" / "lego").symlink_to(DATA / "lego-100")
    (data / "dnerf" / "lego").symlink_to(DATA / "dnerf-lego-tiny")
    (data / "dtu").mkdir()
    (data / "dtu" / "scan65").symlink_to(DATA / "dtu-scan65-tiny")
    assert gpu_check.main(["--export-data", str(tmp_path / "out"), "--data", str(data)]) == 0
    lego = tmp_path / "out" / "blender" / "lego"
    frames = {split: json.loads((lego / f"transforms_{split}.json").read_text())["frames"]
              for split in ("train", "val", "test")}
    assert [len(frames[s]) for s in ("train", "val", "test")] == [100, 2, 25]
    assert [f["file_path"] for f in frames["val"]] == ["./val/r_0", "./val/r_12"]  # evenly spaced
    image = lego / "train" / "r_7.png"
    assert image.is_file() and not image.is_symlink()
    dnerf = json.loads((tmp_path / "out" / "dnerf" / "lego" / "transforms_train.json").read_text())
    assert len(dnerf["frames"]) == 20 and all("time" in frame for frame in dnerf["frames"])
    _check_exported_scan(tmp_path / "out" / "dtu" / "scan65")


def _check_exported_scan(scan: Path) -> None:
    """scan65 halved: JPEG images, binary PNG masks, world_mat pixel rows halved, scale_mat unchanged."""
    import numpy as np
    from PIL import Image

    images, masks = sorted((scan / "image").iterdir()), sorted((scan / "mask").iterdir())
    assert [p.suffix for p in images] == [".jpg"] * 8 and len(masks) == 8
    with Image.open(images[0]) as image, Image.open(masks[0]) as mask:
        assert image.size == mask.size == (50, 37)  # 100x75 // 2
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
    source, exported = np.load(DATA / "dtu-scan65-tiny" / "cameras_sphere.npz"), np.load(scan / "cameras_sphere.npz")
    np.testing.assert_allclose(exported["world_mat_3"][0], source["world_mat_3"][0] * 50 / 100)  # exact ratios
    np.testing.assert_allclose(exported["world_mat_3"][1], source["world_mat_3"][1] * 37 / 75)
    np.testing.assert_allclose(exported["world_mat_3"][2:], source["world_mat_3"][2:])
    np.testing.assert_array_equal(exported["scale_mat_3"], source["scale_mat_3"])


def test_missing_pytest_is_said_clearly(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    runner = importlib.import_module("gpu_check_pytest")
    monkeypatch.setattr(runner.importlib.util, "find_spec", lambda name: None)
    summary = runner.run_pytest(["tests/kernels"], tmp_path / "log", tmp_path / "junit.xml", timeout_s=5)
    assert summary["tests"] == 0 and "pytest is not installed" in summary["error"] and "wheels" in summary["error"]
