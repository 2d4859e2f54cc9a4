"""CPU smoke tests of scripts/benchmark_kernels.py and scripts/profile_ngpc.py (tiny sizes, outputs in tmp_path)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def scripts(monkeypatch):
    """The scripts directory on sys.path, so the scripts import each other as they do when run directly."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return lambda name: importlib.import_module(name)


def _only(directory: Path, pattern: str) -> Path:
    matches = sorted(directory.glob(pattern))
    assert len(matches) == 1, matches
    return matches[0]


def _check_provenance(prov: dict) -> None:
    assert prov["date"] and prov["argv"] and prov["command"]
    assert {"git_commit", "git_dirty"} <= prov.keys()
    assert prov["machine"]["cpu"] and prov["machine"]["device"] == "cpu" and prov["machine"]["gpu"] is None
    assert prov["versions"]["torch"] == torch.__version__ and "triton" in prov["versions"]


@pytest.mark.slow
def test_benchmark_kernels_writes_json_and_markdown(scripts, tmp_path):
    bench = scripts("benchmark_kernels")
    argv = ["--device", "cpu", "--sizes", "1024", "--repeats", "1", "--warmup", "0", "--copy-mib", "4",
            "--output-dir", str(tmp_path)]
    code = bench.main(argv)
    report = json.loads(_only(tmp_path, "kernels-cpu-*.json").read_text())
    _check_provenance(report["provenance"])
    assert report["provenance"]["argv"][1:] == argv
    assert report["copy_bandwidth"]["gb_per_s"] > 0
    assert report["copy_bandwidth"]["bytes_moved"] == 2 * report["copy_bandwidth"]["bytes"]
    assert set(report["configs"]) == set(bench.CONFIGS)
    records = report["results"]
    assert len(records) == len(bench.CONFIGS) * len(bench.BACKENDS) * len(bench.MODES)
    for record in records:
        assert record["n_points"] == 1024
        if record["backend"] == "torch":  # the reference always runs
            assert record["status"] == "ok", record
            assert record["points_per_s"] > 0 and 0 < record["bandwidth_fraction"]
            assert record["bytes"] == 1024 * report["configs"][record["config"]]["bytes_model"]["per_point"][
                record["mode"]] + report["configs"][record["config"]]["bytes_model"]["per_call"][record["mode"]]
        else:  # no CUDA here: Triton and tiny-cuda-nn are recorded as unavailable, with the reason
            assert record["status"] == "unavailable" and record["reason"], record
    fused = report["fused"]
    assert {r["path"] for r in fused} == {"pytorch", "triton-encoding+pytorch-mlp", "fused"}
    assert all(r["status"] == "ok" and r["speedup_vs_pytorch"] == 1.0 for r in fused if r["path"] == "pytorch")
    assert all(r["status"] in ("ok", "unavailable", "failed") for r in fused)
    assert code == (1 if any(r["status"] == "failed" for r in records + fused) else 0)
    table = _only(tmp_path, "kernels-cpu-*.md").read_text()
    assert "| hashgrid-fp16 | torch | fwd+bwd |" in table and "copy bandwidth" in table


@pytest.mark.slow
def test_profile_ngpc_splits_iterations_and_plots(scripts, tmp_path):
    profile = scripts("profile_ngpc")
    argv = ["--device", "cpu", "--backend", "torch", "--tiny", "--iterations", "2", "--warmup", "0",
            "--rays", "16", "--points", "256", "--volume-samples", "8", "--nerf-images", "2",
            "--image", str(DATA / "lego-100" / "train" / "r_0.png"), "--output-dir", str(tmp_path)]
    assert profile.main(argv) == 0
    report = json.loads(_only(tmp_path, "ngpc-profile-torch-cpu-*.json").read_text())
    _check_provenance(report["provenance"])
    assert len(report["results"]) == 4 * 3
    for record in report["results"]:
        assert record["status"] == "ok", record
        assert record["iterations"] == 2 and len(record["per_iteration_ms"]) == 2
        fractions = record["fractions"]
        assert set(fractions) == {"encoding", "mlp", "fused", "other"}
        assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(value >= -1e-9 for value in fractions.values())
        assert fractions["encoding"] > 0 and fractions["mlp"] > 0 and fractions["fused"] == 0
        assert record["encoding_plus_mlp_fraction"] == pytest.approx(fractions["encoding"] + fractions["mlp"])
    assert {r["app"] for r in report["results"]} == {"nerf", "sdf", "image", "volume"}
    summary = report["summary"]
    assert {k: v["paper_percent"] for k, v in summary.items()} == {
        "hashgrid": 72.37, "multires-dense": 60.0, "lowres-dense": 59.96}
    assert all(v["apps"] == 4 and 0 < v["measured_percent"] <= 100 for v in summary.values())
    with Image.open(_only(tmp_path, "ngpc-profile-torch-cpu-*.png")) as image:
        assert image.format == "PNG" and image.width > 400
    assert "| **mean of 4** | hashgrid |" in _only(tmp_path, "ngpc-profile-torch-cpu-*.md").read_text()


@pytest.mark.slow
def test_profile_ngpc_records_unavailable_backend(scripts, tmp_path):
    profile = scripts("profile_ngpc")
    argv = ["--device", "cpu", "--backend", "triton", "--tiny", "--apps", "sdf", "--output-dir", str(tmp_path)]
    assert profile.main(argv) == 0
    report = json.loads(_only(tmp_path, "ngpc-profile-triton-cpu-*.json").read_text())
    assert [r["status"] for r in report["results"]] == ["unavailable"] * 3
    assert all("CUDA" in r["reason"] for r in report["results"])
    assert _only(tmp_path, "ngpc-profile-triton-cpu-*.png").stat().st_size > 0


def test_staged_backward_gives_the_gradients_of_one_backward(scripts):
    profile = scripts("profile_ngpc")
    torch.manual_seed(0)
    encoder, mlp, head = torch.nn.Linear(3, 8), torch.nn.Linear(11, 4), torch.nn.Linear(4, 1)
    x = torch.rand(32, 3)

    class Unstaged:
        def run(self, part, fn, *inputs):
            return fn(*inputs)

    def loss(prof):
        features = prof.run("encoding", encoder, x * 2)
        hidden = prof.run("mlp", mlp, torch.cat([features.relu(), x], dim=-1))  # non-leaf input: cut as "other"
        out = prof.run("mlp", head, hidden.tanh())
        return (out**2).mean() + features.sum() * 0.1  # a leaf with consumers in two stages

    params = [*encoder.parameters(), *mlp.parameters(), *head.parameters()]
    loss(Unstaged()).backward()
    expected = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    prof = profile.StagedProfiler("cpu")
    prof.begin()
    prof.backward(loss(prof))
    split = prof.end()
    for got, want in zip((p.grad for p in params), expected):
        torch.testing.assert_close(got, want)
    assert split["encoding"] > 0 and split["mlp"] > 0 and split["other"] >= 0
    assert split["total"] == pytest.approx(split["encoding"] + split["mlp"] + split["fused"] + split["other"])


def test_benchmark_splat_writes_json_and_markdown(scripts, tmp_path):
    bench = scripts("benchmark_splat")
    argv = ["--device", "cpu", "--gaussians", "200", "--sizes", "32", "--repeats", "1", "--output-dir", str(tmp_path)]
    assert bench.main(argv) == 0
    report = json.loads(_only(tmp_path, "splat-cpu-*.json").read_text())
    assert report["provenance"]["argv"][1:] == argv and report["provenance"]["machine"]["device"] == "cpu"
    (row,) = report["rows"]
    assert row["backend"] == "torch" and row["gaussians"] == 200 and row["size"] == 32
    assert row["forward_s"] > 0 and row["forward_backward_s"] > 0 and row["peak_memory_gib"] > 0
    assert "| torch | 200 | 32 |" in _only(tmp_path, "splat-cpu-*.md").read_text()
