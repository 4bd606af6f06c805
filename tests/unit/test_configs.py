"""The twelve experiment configs reproduce the model-zoo recipes; bad names fail with the list of choices."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from isnet.cli import compose
from isnet.inference import InferenceConfig, test_settings
from isnet.meta import RECIPES, dataset_info

ZOO_FILE = Path(__file__).resolve().parents[1] / "data" / "isnet-model-zoo.md"
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
BACKBONES = {"R-50-D8": ("r50", "resnet50_d8"), "R-101-D8": ("r101", "resnet101_d8"),
             "S-101-D8": ("s101", "resnest101_d8")}  # fmt: skip
DATASETS = {"COCOStuff-10k": ("cocostuff10k", 182), "ADE20k": ("ade20k", 150), "CityScapes": ("cityscapes", 19),
            "LIP": ("lip", 20)}  # fmt: skip
DATAMODULES = {"cocostuff10k": "COCOStuff10kDataModule", "ade20k": "ADE20kDataModule",
               "cityscapes": "CityscapesDataModule", "lip": "LIPDataModule"}  # fmt: skip
EXPERIMENTS = ["demo"] + [f"isnet_{b}_d8_{d}" for b, _ in BACKBONES.values() for d, _ in DATASETS.values()]
EXTRA_OVERRIDES = {"train": [], "eval": ["ckpt=x.pth"], "predict": ["ckpt=x.pth", "input=x.png"]}


def parse_zoo(path: Path) -> list[dict]:
    """Rows of the model-zoo markdown: one per (dataset section, backbone)."""
    rows, dataset = [], None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            dataset = line[3:].strip()
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if dataset is None or len(cells) < 5 or cells[0] not in BACKBONES:
            continue
        crop_h, crop_w = (int(v) for v in cells[1].split("x"))
        match = re.fullmatch(r"LR/POLICY/BS/EPOCH: ([\d.]+)/(\w+)/(\d+)/(\d+)", cells[2])
        assert match, cells[2]
        rows.append(dict(dataset=dataset, backbone=cells[0], crop=[crop_h, crop_w], lr=float(match[1]),
                         policy=match[2], batch=int(match[3]), epochs=int(match[4])))  # fmt: skip
    return rows


ZOO_ROWS = parse_zoo(ZOO_FILE)


def expected_wd_min_lr(dataset: str, backbone: str) -> tuple[float, float]:
    """Weight decay and min_lr of the reference configs (spec section 4, optimisation table)."""
    if dataset == "cocostuff10k":
        return 1e-4, (1e-4 if backbone == "s101" else 1e-5)
    if dataset == "lip" and backbone == "s101":
        return 5e-4, 7e-5
    return 5e-4, 1e-4


def test_zoo_file_has_twelve_rows() -> None:
    assert len(ZOO_ROWS) == 12
    assert {(r["dataset"], r["backbone"]) for r in ZOO_ROWS} == {(d, b) for d in DATASETS for b in BACKBONES}


@pytest.mark.parametrize("row", ZOO_ROWS, ids=lambda r: f"{r['backbone']}-{r['dataset']}")
def test_experiment_matches_model_zoo(row: dict, tmp_path: Path) -> None:
    short, backbone = BACKBONES[row["backbone"]]
    dataset, num_classes = DATASETS[row["dataset"]]
    name = f"isnet_{short}_d8_{dataset}"
    cfg = compose("train", [f"experiment={name}"], output_dir=str(tmp_path))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["experiment_name"] == name
    assert list(resolved["data"]["crop_size"]) == row["crop"]
    assert resolved["data"]["batch_size"] == row["batch"]
    assert resolved["data"]["_target_"] == f"isnet.data.{DATAMODULES[dataset]}"
    assert resolved["schedule"]["policy"] == row["policy"] == "poly"
    assert resolved["trainer"]["max_epochs"] == row["epochs"]
    model = resolved["model"]
    wd, min_lr = expected_wd_min_lr(dataset, short)
    # the reference's optimiser: plain SGD, one parameter group, the recipe's numbers
    assert model["optimizer"] == {"_target_": "torch.optim.SGD", "_partial_": True, "lr": row["lr"],
                                  "momentum": 0.9, "weight_decay": wd}  # fmt: skip
    assert model["param_rules"] is None
    assert model["min_lr"] == min_lr and model["power"] == 0.9
    assert model["loss"] == {"_target_": "isnet.models.losses.CrossEntropyLoss", "_partial_": True,
                             "class_weight": None}  # fmt: skip
    assert model["num_classes"] == num_classes
    assert model["loss_weights"] == {"stage2": 1.0, "stage1": 0.4, "aux": 0.4}
    net = model["model_config"]
    assert net["backbone"] == backbone and net["pretrained"] == "openmmlab"  # the reference's ImageNet start
    assert (net["feats_channels"], net["transform_channels"], net["dropout"]) == (512, 256, 0.1)
    lip = dataset == "lip"
    assert net["shortcut"] is lip
    assert net["act"] == ("leaky_relu" if lip else "relu")
    # validation = the reference's single-scale setting; ms+flip settings are known for the name
    assert InferenceConfig(**model["inference"]) == test_settings(name, ms_flip=False)
    assert isinstance(test_settings(name, ms_flip=True), InferenceConfig)
    # the config and isnet.meta tell the same recipe
    recipe = RECIPES[name]
    assert (recipe.backbone, recipe.dataset, recipe.num_classes) == (backbone, dataset, num_classes)
    assert (list(recipe.crop_size), recipe.batch_size, recipe.epochs) == (
        row["crop"],
        row["batch"],
        row["epochs"],
    )
    assert (recipe.lr, recipe.weight_decay, recipe.min_lr) == (row["lr"], wd, min_lr)
    assert {k: net[k] for k in ("backbone", "shortcut", "act")} == {
        k: recipe.model_kwargs()[k] for k in ("backbone", "shortcut", "act")
    }


def leaves(node: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in node.items():
        out.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_experiments_set_only_what_differs_from_their_groups(name: str, tmp_path: Path) -> None:
    recipe = RECIPES[name]
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml"))
    raw.pop("defaults")
    groups = [
        f"data={recipe.dataset}",
        f"model/backbone={recipe.short}_d8",
        f"schedule=poly_{recipe.epochs}e",
    ]
    base = compose("train", groups, output_dir=str(tmp_path))
    for key, value in leaves(raw).items():
        assert OmegaConf.select(base, key) != value, f"{name}.yaml repeats {key}={value} from its groups"


@pytest.mark.parametrize("dataset", ["ade20k", "cityscapes", "cocostuff10k", "lip"])
def test_data_configs_take_pipelines_and_splits_from_meta(dataset: str, tmp_path: Path) -> None:
    """conf/data/<dataset>.yaml does not restate the dataset's facts: the DataModule reads them from isnet.meta."""
    info = dataset_info(dataset)
    dm = instantiate(compose("train", [f"data={dataset}"], output_dir=str(tmp_path)).data)
    train, test = info.train_pipeline, info.test_pipeline
    assert (dm.scale, dm.crop_size, dm.ratio_range) == (
        train["scale"],
        train["crop_size"],
        train["ratio_range"],
    )
    assert (dm.test_scale, dm.test_keep_ratio, dm.lip) == (test["scale"], test["keep_ratio"], train["lip"])
    assert (dm.train_split, dm.val_split, dm.test_split) == info.splits
    assert dm.class_names == list(info.class_names) and dm.palette == list(info.palette)
    assert dm.flip_pairs == list(info.flip_pairs) and dm.batch_size == info.batch_size


def test_steps_follow_the_global_batch(tmp_path: Path) -> None:
    """The batch in the config is global: ddp divides it over devices instead of multiplying it."""
    cfg = compose("train", ["experiment=isnet_r50_d8_ade20k", "trainer=ddp"], output_dir=str(tmp_path))
    assert cfg.trainer.sync_batchnorm is True and cfg.trainer.strategy == "ddp"
    assert cfg.data.batch_size == 16


def test_demo_experiment(tmp_path: Path) -> None:
    cfg = compose("train", ["experiment=demo"], output_dir=str(tmp_path))
    assert cfg.data._target_ == "isnet.data.SyntheticDataModule"
    assert cfg.model.model_config.backbone == "resnet18d" and cfg.model.model_config.pretrained is False
    assert cfg.trainer.accelerator == "cpu" and cfg.test is True
    assert "prediction_overlays" in cfg.callbacks and "metrics_history" in cfg.callbacks


@pytest.mark.parametrize("config_name", ["train", "eval", "predict"])
def test_every_experiment_composes_with_every_entry_point(config_name: str, tmp_path: Path) -> None:
    for name in EXPERIMENTS:
        cfg = compose(
            config_name, [f"experiment={name}", *EXTRA_OVERRIDES[config_name]], output_dir=str(tmp_path)
        )
        assert cfg.experiment_name == name
        assert cfg.model.model_config.backbone


@pytest.mark.parametrize(
    ("override", "group", "choices"),
    [
        (
            "experiment=isnet_r18_d8_ade20k",
            "experiment",
            ["demo", "isnet_r50_d8_ade20k", "isnet_s101_d8_lip"],
        ),
        ("data=ade20", "data", ["ade20k", "cityscapes", "cocostuff10k", "lip", "synthetic"]),
        ("model/backbone=r152_d8", "model/backbone", ["r50_d8", "r101_d8", "s101_d8", "resnet18d"]),
        ("trainer=tpu", "trainer", ["cpu", "ddp", "ddp_sim", "gpu"]),
    ],
)
def test_unknown_names_list_the_choices(override: str, group: str, choices: list[str]) -> None:
    with pytest.raises(HydraException) as info:
        compose("train", [override])
    message = str(info.value)
    assert f"Could not find '{group}/{override.split('=')[1]}'" in message
    assert f"Available options in '{group}'" in message
    for choice in choices:
        assert re.search(rf"^\s+{re.escape(choice)}$", message, flags=re.M), choice


@pytest.mark.parametrize("epochs", [110, 130, 150, 180, 440])
def test_schedule_files(epochs: int, tmp_path: Path) -> None:
    cfg = compose("train", [f"schedule=poly_{epochs}e"], output_dir=str(tmp_path))
    assert cfg.trainer.max_epochs == epochs and cfg.schedule.policy == "poly"
