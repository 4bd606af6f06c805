"""``scripts/eval.py ema=true`` evaluates the weight average a checkpoint carries (``callbacks=[default,ema]``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from isnet.cli.eval import evaluate
from isnet.errors import CheckpointError
from isnet.utils.io import safe_torch_load
from tests.integration.conftest import tiny_config


def test_eval_ema_true_evaluates_the_average(trained_run: Path, tmp_path: Path) -> None:
    raw = safe_torch_load(trained_run / "checkpoints" / "last.ckpt")
    # an average that predicts class 1 everywhere, so that it cannot score like the trained weights
    average = {k[len("model.") :]: v.clone() for k, v in raw["state_dict"].items() if k.startswith("model.")}
    average["head.decoder_stage2.1.bias"][1] += 1e4
    with_ema = tmp_path / "with_ema.ckpt"
    torch.save(
        {**raw, "callbacks": {"EMAWeights": {"momentum": 0.1, "updates": 2, "weights": average}}}, with_ema
    )
    as_trained = (
        tmp_path / "as_trained.ckpt"
    )  # the average stored as the trained weights: the expected result
    torch.save({**raw, "state_dict": {f"model.{k}": v for k, v in average.items()}}, as_trained)

    def run(ckpt: Path, *extra: str) -> dict:
        return evaluate(tiny_config("eval", tmp_path, [f"ckpt={ckpt}", "plots=false", *extra]))

    result = run(with_ema, "ema=true")
    assert result["ema"] is True
    assert result["IoU"] == run(as_trained)["IoU"] != run(with_ema)["IoU"]
    with pytest.raises(CheckpointError, match=r"callbacks=\[default,ema\]"):
        run(trained_run / "checkpoints" / "last.ckpt", "ema=true")
