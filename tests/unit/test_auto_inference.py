"""Resource limits: whole-image inference within a pixel budget, sliding windows above it; peak memory."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from isnet.inference import (
    DEFAULT_MAX_PIXELS,
    auto_inference,
    choose_inference_mode,
    estimate_whole_inference_bytes,
    max_pixels_for_budget,
    peak_memory,
    slide_inference,
    whole_inference,
)
from isnet.inference.auto import ACTIVATION_BYTES_PER_PIXEL

REPO_ROOT = Path(__file__).resolve().parents[2]
LOGGER = "isnet.inference.auto"


class CountingNet:
    """A context-dependent stand-in network: 1/4-resolution logits minus the input's global mean.

    The global term makes whole-image and window predictions differ, so the tests can tell the modes apart.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return F.avg_pool2d(x, 4) - x.mean(dim=(2, 3), keepdim=True)


def test_within_budget_is_exactly_whole_inference(caplog: pytest.LogCaptureFixture) -> None:
    image = torch.randn(1, 3, 40, 56)
    net = CountingNet()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        out = auto_inference(net, image, out_size=(50, 70), crop_size=24, stride=16, max_pixels=40 * 56)
    assert net.calls == [(1, 3, 40, 56)]  # one forward on the whole image
    assert torch.equal(out, whole_inference(CountingNet(), image, out_size=(50, 70)))
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_over_budget_falls_back_to_slide_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    image = torch.randn(1, 3, 40, 56)
    net = CountingNet()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        out = auto_inference(
            net, image, out_size=(50, 70), crop_size=24, stride=16, max_pixels=40 * 56 - 1, use_probs=True
        )
    expected = slide_inference(
        CountingNet(), image, crop_size=24, stride=16, out_size=(50, 70), use_probs=True
    )
    assert torch.equal(out, expected)
    assert len(net.calls) == 2 * 3 and all(c == (1, 3, 24, 24) for c in net.calls)  # windows only
    whole = whole_inference(CountingNet(), image, out_size=(50, 70), use_probs=True)
    assert not torch.allclose(out, whole, atol=1e-3)  # the branches differ, so the check above is meaningful
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "1x40x56 (2240 pixels)" in message and "max_pixels=2239" in message
    assert "sliding-window inference with crop_size=(24, 24), stride=(16, 16)" in message


def test_budget_counts_the_whole_batch() -> None:
    assert choose_inference_mode((1, 3, 32, 32), max_pixels=2048) == "whole"
    assert choose_inference_mode((2, 3, 32, 32), max_pixels=2048) == "whole"
    assert choose_inference_mode((3, 3, 32, 32), max_pixels=2048) == "slide"
    assert choose_inference_mode((1, 3, 2048, 2048)) == "whole"  # the default budget takes 2048x2048
    assert choose_inference_mode((1, 3, 2048, 2049)) == "slide"
    assert DEFAULT_MAX_PIXELS == 2048 * 2048


def test_with_a_real_model_both_branches_give_full_size_scores() -> None:
    from isnet import ISNet

    model = ISNet(backbone="resnet18d", num_classes=4, feats_channels=16, transform_channels=8).eval()
    image = torch.randn(1, 3, 48, 40)
    whole = auto_inference(model.predict_logits, image, (48, 40), crop_size=32, stride=24, max_pixels=10**6)
    slide = auto_inference(model.predict_logits, image, (48, 40), crop_size=32, stride=24, max_pixels=100)
    assert whole.shape == slide.shape == (1, 4, 48, 40)
    assert torch.equal(slide, slide_inference(model.predict_logits, image, 32, 24, out_size=(48, 40)))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"max_pixels": 0}, "max_pixels must be a positive int"),
        ({"max_pixels": 1.5e6}, "max_pixels must be a positive int"),
        ({"max_pixels": True}, "max_pixels must be a positive int"),
        ({"crop_size": (0, 8)}, "crop_size must be a positive int"),
        ({"stride": "8"}, "stride must be a positive int"),
    ],
)
def test_bad_settings_are_rejected_before_any_work(kwargs: dict, pattern: str) -> None:
    net = CountingNet()
    settings = {"crop_size": 16, "stride": 8, "max_pixels": 10**6, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        auto_inference(net, torch.randn(1, 3, 32, 32), None, **settings)
    assert net.calls == []


def test_memory_estimate_and_budget() -> None:
    # 2 images of 512x1024 with 19 classes, scores at 1024x2048: activations + fp32 scores.
    expected = 2 * (512 * 1024 * ACTIVATION_BYTES_PER_PIXEL + 19 * 1024 * 2048 * 4)
    assert estimate_whole_inference_bytes((2, 3, 512, 1024), 19, out_size=(1024, 2048)) == expected
    assert estimate_whole_inference_bytes((1, 3, 10, 10), 2, activation_bytes_per_pixel=0) == 2 * 100 * 4
    assert max_pixels_for_budget(8 * 2**30) == 8 * 2**30 // ACTIVATION_BYTES_PER_PIXEL
    assert max_pixels_for_budget(1000, activation_bytes_per_pixel=3) == 333
    with pytest.raises(ValueError, match="budget_bytes"):
        max_pixels_for_budget(0)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the current RSS from /proc")
def test_peak_memory_tracks_host_allocations() -> None:
    """In a fresh process, touching 256 MiB lifts the reported host peak to at least current RSS + 256 MiB."""
    code = (
        "import json, numpy as np\n"
        "from isnet.inference import peak_memory\n"
        "def rss_mib():\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith('VmRSS:'))\n"
        "    return int(line.split()[1]) / 1024\n"
        "now = rss_mib()\n"
        "block = np.ones(256 * 2**20, dtype=np.uint8)\n"
        "print(json.dumps([now, rss_mib(), peak_memory()]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    rss_before, rss_after, report = json.loads(result.stdout.strip().splitlines()[-1])
    assert rss_after - rss_before >= 250  # the block is resident
    assert report["peak_rss_mib"] >= rss_after - 1  # the peak covers it (1 MiB for rounding)
    if not torch.cuda.is_available():
        assert report["cuda_max_allocated_mib"] is None and report["cuda_max_reserved_mib"] is None


def test_peak_memory_keys_are_json_ready() -> None:
    report = peak_memory()
    assert set(report) == {"peak_rss_mib", "cuda_max_allocated_mib", "cuda_max_reserved_mib"}
    assert report["peak_rss_mib"] > 0
    json.dumps(report)


@pytest.mark.gpu
def test_peak_memory_reports_cuda_peak() -> None:
    from isnet.inference import reset_peak_memory

    torch.cuda.init()
    reset_peak_memory()
    block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
    report = peak_memory()
    del block
    assert report["cuda_max_allocated_mib"] >= 64 and report["cuda_max_reserved_mib"] >= 64
