"""The Optuna search and the SLURM launcher configs compose with the real training config."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from isnet.cli import CONFIG_DIR


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def test_optuna_search_composes_and_targets_real_keys() -> None:
    cfg = _compose(["hparams_search=isnet_optuna", "experiment=demo"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/mIoU_best"
    for key in sweeper.params:  # every searched key exists in the composed config
        node = cfg
        for part in key.split("."):
            assert part in node, f"{key} is not a config key"
            node = node[part]
    assert "schedule.lr" in sweeper.params


def test_slurm_launcher_composes_with_ddp() -> None:
    cfg = _compose(["launcher=slurm", "trainer=ddp", "experiment=isnet_r50_d8_ade20k"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node) == (8, 8)
    assert cfg.trainer.sync_batchnorm is True
