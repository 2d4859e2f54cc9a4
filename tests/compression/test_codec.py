"""The compact container: quantisation error bounds, raw round trips, entropy coding shrinks redundant data."""

import numpy as np
import pytest
import torch

from ng_methods.compression.codec import EncodedArray, dequantize, quantize, read_container, write_container


@pytest.mark.parametrize("bits", [4, 8, 12, 16])
def test_quantize_error_is_half_a_step(bits):
    x = torch.randn(1000, 3) * torch.tensor([1.0, 10.0, 0.01])
    symbols, lo, hi = quantize(x, bits)
    back = dequantize(symbols, lo, hi, bits)
    step = torch.from_numpy((hi - lo) / ((1 << bits) - 1))
    assert torch.all((back - x).abs() <= step / 2 + 1e-6 * x.abs().max())
    assert symbols.dtype == (np.uint8 if bits <= 8 else np.uint16)


def test_constant_channel_is_exact():
    x = torch.full((10, 2), 0.25)
    symbols, lo, hi = quantize(x, 8)
    assert torch.equal(dequantize(symbols, lo, hi, 8), x)


def test_container_round_trip(tmp_path):
    means = torch.randn(500, 3)
    opacity = torch.rand(500, 1)
    ids = torch.randint(0, 64, (500, 6), dtype=torch.int16)
    arrays = {"means": EncodedArray.raw(means.half()), "opacity": EncodedArray.quantize(opacity, 8),
              "ids": EncodedArray.raw(ids)}
    size = write_container(tmp_path / "x.ngc", arrays, meta={"sh_degree": 0, "note": "test"})
    assert size == (tmp_path / "x.ngc").stat().st_size
    decoded, meta = read_container(tmp_path / "x.ngc")
    assert meta == {"sh_degree": 0, "note": "test"}
    assert torch.equal(decoded["means"].decode(), means.half())
    assert torch.equal(decoded["ids"].decode(), ids)
    torch.testing.assert_close(decoded["opacity"].decode(), opacity, atol=0.5 / 255 + 1e-6, rtol=0)


def test_entropy_coding_shrinks_skewed_symbols(tmp_path):
    # Mostly-zero 8-bit symbols carry far less than 8 bits each.
    x = torch.where(torch.rand(100000) < 0.95, torch.zeros(100000), torch.rand(100000))[:, None]
    size = write_container(tmp_path / "s.ngc", {"x": EncodedArray.quantize(x, 8)})
    assert size < 0.3 * 100000


def test_bad_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.ngc"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.ngc"):
        read_container(bad)
