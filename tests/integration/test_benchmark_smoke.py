"""scripts/benchmark.py runs end to end at a tiny size and writes a complete JSON report (no timing claims)."""

from __future__ import annotations

import json

import pytest

from isnet.cli.benchmark import main


@pytest.mark.slow
def test_benchmark_smoke_writes_report(tmp_path) -> None:
    out = tmp_path / "bench.json"
    report = main(
        [
            "--smoke",
            "--repeats",
            "1",
            "--cases",
            "slc,infer,train,data,compile,checkpointing",
            "--out",
            str(out),
        ]
    )
    saved = json.loads(out.read_text())
    assert saved["backbone"] == "resnet18d" == report["backbone"]
    assert saved["matmul_peak_gflops"] > 0
    assert saved["slc_centres"]["max_abs_diff"] < 1e-5  # vectorised SLC equals the reference loop
    cases = {c["case"]: c for c in saved["cases"]}
    assert set(cases) == {"slc_module", "infer", "train_step", "infer_compiled", "train_step_compiled",
                          "train_step_checkpointing"}  # fmt: skip
    checkpointing = cases["train_step_checkpointing"]
    assert (
        checkpointing["checkpointed_vs_plain"]["peak_rss"] > 0
        and "step_rss" in checkpointing["checkpointed_vs_plain"]
    )
    kept = checkpointing["saved_for_backward_mb"]
    assert kept["ours_checkpointed"]["network"] < 0.5 * kept["ours"]["network"]
    assert len(cases["train_step_compiled"]["ours_compiled"]["times_s"]) == 1
    assert len(cases["infer"]["ours"]["times_s"]) == 1 and cases["infer"]["ours"]["peak_rss_mb"] > 0
    assert 0 < cases["infer"]["ours"]["fraction_of_matmul_peak"]
    assert set(saved["data_images_per_s_per_worker"]) == {"ade20k", "cocostuff10k", "cityscapes", "lip"}


def test_benchmark_without_the_worker_says_it_needs_a_checkout(tmp_path, monkeypatch, capsys) -> None:
    import isnet.cli.benchmark as benchmark

    monkeypatch.setattr(benchmark, "WORKER", tmp_path / "tools" / "bench_worker.py")
    with pytest.raises(SystemExit) as exit_info:
        main(["--smoke", "--cases", "slc"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1
    assert "source checkout" in err and str(tmp_path / "tools" / "bench_worker.py") in err
