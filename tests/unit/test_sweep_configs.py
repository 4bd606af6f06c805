"""The Optuna search and the SLURM launcher configs (one node, several nodes) compose with the real training
config."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

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


def test_multinode_slurm_launcher_derives_from_the_trainer() -> None:
    """Nodes and processes per node are written once, as trainer.num_nodes / trainer.devices."""
    cfg = _compose(["launcher=slurm_multinode", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=3"])
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (3, 4, 4)
    assert cfg.trainer.num_nodes == 3 and cfg.trainer.sync_batchnorm is True
    raw = OmegaConf.to_container(launcher, resolve=False)
    assert (
        raw["nodes"] == "${oc.select:trainer.num_nodes,1}" and raw["tasks_per_node"] == "${trainer.devices}"
    )
    assert _compose(["launcher=slurm_multinode", "trainer=ddp"]).hydra.launcher.nodes == 2  # its default
    single = _compose(["launcher=slurm", "trainer=ddp", "trainer.devices=2"]).hydra.launcher
    assert (single.nodes, single.tasks_per_node) == (1, 2)


def test_multinode_slurm_launcher_is_built_with_the_derived_values() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import hydra

    cfg = _compose(["launcher=slurm_multinode", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"])
    params = hydra.utils.instantiate(cfg.hydra.launcher).params
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (2, 8, 8)
