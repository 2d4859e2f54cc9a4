"""scripts/benchmark_methods.py runs end to end on CPU: trains, reloads the checkpoint, evaluates, writes results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_methods.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("benchmark_methods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _downscale_images(scene: Path, factor: int) -> None:
    """Shrink a Blender scene's images in place (intrinsics follow: nerfstudio derives them from the image size)."""
    for path in scene.glob("*/*.png"):
        image = Image.open(path)
        image.resize((image.width // factor, image.height // factor), Image.LANCZOS).save(path)


@pytest.mark.slow
def test_benchmark_writes_json_and_markdown(tiny_lego, tmp_path):
    # 25x25 views: the untrained occupancy grid is dense, so a full 100x100 render takes ~40 s on 2 CPU cores.
    _downscale_images(tiny_lego, 4)
    benchmark = _load_script()
    out = tmp_path / "benchmarks"
    argv = [
        "--methods", "ngpc-hashgrid", "instant-ngp", "ng-splatfacto", "splatfacto", "--data", str(tiny_lego), "--device", "cpu",
        "--reduced", "--max-steps", "3", "--output-dir", str(out),
    ]
    assert benchmark.main(argv) == 0

    (json_path,) = out.glob("lego-*.json")
    report = json.loads(json_path.read_text())
    ours, baseline, splat, splat_baseline = report["results"]
    assert ours["status"] == "ok", ours.get("error")
    assert ours["method"] == "ngpc-hashgrid" and ours["scene"] == "lego" and ours["steps"] == 3
    assert ours["train_time_s"] > 0 and ours["render_fps"] > 0 and ours["peak_mem_mb"] > 0
    assert 0 < ours["psnr"] < 60 and 0 < ours["ssim"] <= 1
    assert ours["eval_images"] == 2 and ours["render_images"] == 1  # the first render is the untimed warm-up
    assert Path(ours["checkpoint"]).is_file()
    # nerfstudio's instant-ngp needs CUDA: skipped on CPU with a reason, not a crash.
    assert baseline["status"] == "skipped" and "CUDA" in baseline["reason"]
    # Gaussian methods report their count and storage; nerfstudio's splatfacto is CUDA-only.
    assert splat["status"] == "ok", splat.get("error")
    assert splat["num_gaussians"] > 0 and splat["storage_mb"] > 0 and splat["storage_kind"] == "ply"
    assert splat_baseline["status"] == "skipped" and "CUDA" in splat_baseline["reason"]

    prov = report["provenance"]
    for key in ("date", "command", "git_commit", "git_dirty", "machine", "versions"):
        assert key in prov
    assert prov["machine"]["cpu"] and prov["versions"]["torch"] and prov["versions"]["nerfstudio"] == "1.1.5"
    assert "--max-steps 3" in prov["command"]

    table = (out / "results.md").read_text().splitlines()
    assert table[0].startswith("| method | scene | steps | train s | PSNR |")
    rows = [line for line in table[2:] if line.startswith("| ngpc-hashgrid | lego | 3 |")]
    assert len(rows) == 1 and not any(line.startswith("| instant-ngp |") for line in table)
    assert ours["param_mb"] > 0 and ours["checkpoint_mb"] > ours["param_mb"] and ours["render_resolution"] == "25x25"
    assert not (out / "distillation.md").exists()  # only distillation runs write the student/teacher table

    # --evaluate-runs scores a saved run without training; a run without a teacher is a plain "model" row.
    evaluated = tmp_path / "evaluated"
    assert benchmark.main(["--evaluate-runs", ours["config_path"], "--device", "cpu", "--output-dir", str(evaluated)]) == 0
    (json_path,) = evaluated.glob("*.json")
    (row,) = json.loads(json_path.read_text())["distillation"]
    assert row["role"] == "model" and row["method"] == "ngpc-hashgrid" and row["scene"] == "lego"
    assert row["psnr"] == pytest.approx(ours["psnr"], abs=1e-4) and row["param_mb"] == ours["param_mb"]
    distillation_table = (evaluated / "distillation.md").read_text().splitlines()
    assert distillation_table[0].startswith("| method | role | teacher | scene | PSNR | SSIM | render FPS |")
    assert distillation_table[2].startswith("| ngpc-hashgrid | model | — | lego |")


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    benchmark = _load_script()
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
