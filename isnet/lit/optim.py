"""The optimiser of :class:`ISNetModule`: a ``torch.optim`` class from its config, over parameter groups.

Default (the reference's ISNet, sssegmentation ``optimizers/builder.py`` with ``params_rules={}``): plain SGD over
**one** parameter group holding every trainable parameter, weight decay included on BatchNorm and biases.

Parameter rules (``param_rules``, off by default) follow the reference's ``DefaultParamsConstructor``
(``optimizers/paramsconstructor.py``): learning-rate and weight-decay multipliers per parameter-name prefix
(``backbone``, ``head``, ``auxiliary_decoder`` or any deeper prefix; the longest matching prefix wins), and for
normalisation layers and biases. Parameters with equal multipliers share one group (the reference makes one
group per parameter; the update is the same). Each group records its ``lr_multiplier``, and the poly schedule
sets ``lr = lr_multiplier * poly_lr(t)`` (:class:`isnet.lit.schedule.PolyLR` with ``base_lr``), as the
reference's ``PolyScheduler.updatelr`` does.

One difference from the reference, on purpose: there a parameter matched by a prefix rule takes that rule's
multipliers only, and the norm/bias multipliers (its ``base_setting``) apply to the other parameters. Here they
multiply: ``backbone: {lr_multiplier: 0.1}`` with ``norm_wd_multiplier: 0`` gives the backbone 0.1x the
learning rate **and** no weight decay on its BatchNorm parameters.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from isnet.errors import ConfigError
from isnet.lit.specs import as_spec, check_number, resolve_target

__all__ = [
    "NORM_LAYERS",
    "SGD_DEFAULTS",
    "build_optimizer",
    "check_param_rules",
    "optimizer_spec",
    "param_groups",
]

#: The reference's ISNet optimiser when nothing is configured (``lr``/``momentum``/``weight_decay`` override it).
SGD_DEFAULTS: dict[str, Any] = {
    "_target_": "torch.optim.SGD",
    "_partial_": True,
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
}

#: Layers whose parameters ``norm_wd_multiplier`` applies to (timm's norm layers derive from these).
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)

_RULE_KEYS = ("lr_multiplier", "wd_multiplier")
_BASE_KEYS = ("norm_wd_multiplier", "bias_wd_multiplier", "bias_lr_multiplier")


def optimizer_spec(
    optimizer: Mapping[str, Any] | functools.partial | None,
    lr: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
) -> dict[str, Any]:
    """The optimiser config as a checked plain dict.

    Args:
        optimizer: Hydra partial or ``_target_`` dict of a ``torch.optim`` optimiser (``lr`` required);
            ``None``: :data:`SGD_DEFAULTS` with ``lr``/``momentum``/``weight_decay`` where given.
        lr, momentum, weight_decay: The shortcut for the default SGD; an error together with ``optimizer``.
    """
    shortcut = {
        k: v
        for k, v in {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}.items()
        if v is not None
    }
    if optimizer is None:
        spec, where = {**SGD_DEFAULTS, **shortcut}, ""
    elif shortcut:
        raise ConfigError(
            f"{sorted(shortcut)} configure the default SGD; with an optimizer config set them in it "
            f"(optimizer.lr=..., on the command line model.optimizer.lr=...), not twice"
        )
    else:
        spec, where = as_spec(optimizer, "optimizer"), "optimizer."
    spec["_target_"], cls = resolve_target(spec, "optimizer", torch.optim, torch.optim.Optimizer)
    if "lr" not in spec:
        raise ConfigError(f"{where}lr is required: it is the initial learning rate of the poly schedule")
    check_number(f"{where}lr", spec["lr"])
    if "weight_decay" in spec:
        check_number(f"{where}weight_decay", spec["weight_decay"], allow_zero=True)
    m = spec.get("momentum", 0.0)
    if isinstance(m, bool) or not isinstance(m, int | float) or not 0.0 <= m < 1.0:
        raise ConfigError(f"{where}momentum must be in [0, 1), got {m!r}")
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "params")]
    if unknown := sorted(k for k in spec if not k.startswith("_") and k not in accepted):
        raise ConfigError(
            f"{where}{unknown[0]} is not an argument of {spec['_target_']}; it takes {accepted}"
        )
    return spec


def check_param_rules(rules: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``param_rules`` as a checked plain dict (``None`` stays ``None``: one group)."""
    if rules is None:
        return None
    if not isinstance(rules, Mapping):
        raise ConfigError(f"param_rules must be a mapping, got {rules!r}")
    rules = {str(k): v for k, v in rules.items()}
    if unknown := sorted(set(rules) - {"modules", *_BASE_KEYS}):
        raise ConfigError(f"param_rules has unknown keys {unknown}; allowed: {['modules', *_BASE_KEYS]}")
    for key in _BASE_KEYS:
        if key in rules:
            check_number(f"param_rules.{key}", rules[key], allow_zero=True)
    modules = rules.get("modules") or {}
    if not isinstance(modules, Mapping):
        raise ConfigError(
            f"param_rules.modules must map parameter-name prefixes to multipliers, got {modules!r}"
        )
    plain_modules = {}
    for prefix, rule in modules.items():
        if not isinstance(rule, Mapping) or (unknown := sorted(set(rule) - set(_RULE_KEYS))):
            raise ConfigError(f"param_rules.modules.{prefix} must set only {list(_RULE_KEYS)}, got {rule!r}")
        for key, value in rule.items():
            check_number(f"param_rules.modules.{prefix}.{key}", value, allow_zero=True)
        plain_modules[str(prefix)] = {str(k): v for k, v in rule.items()}
    return {**rules, "modules": plain_modules}


def _multipliers(name: str, is_norm: bool, is_bias: bool, rules: Mapping[str, Any]) -> tuple[float, float]:
    """``(lr_multiplier, wd_multiplier)`` of the parameter ``name``."""
    matches = [p for p in rules["modules"] if name == p or name.startswith(p + ".")]
    rule = rules["modules"][max(matches, key=len)] if matches else {}
    lr_mult, wd_mult = rule.get("lr_multiplier", 1.0), rule.get("wd_multiplier", 1.0)
    if is_norm:  # weights and biases of normalisation layers
        wd_mult *= rules.get("norm_wd_multiplier", 1.0)
    elif is_bias:
        lr_mult *= rules.get("bias_lr_multiplier", 1.0)
        wd_mult *= rules.get("bias_wd_multiplier", 1.0)
    return lr_mult, wd_mult


def param_groups(
    model: nn.Module, spec: Mapping[str, Any], rules: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: the trainable parameters only (``requires_grad``), in model order.

    Args:
        model: The network.
        spec: The optimiser config (:func:`optimizer_spec`); its ``lr`` and ``weight_decay`` are scaled.
        rules: Checked ``param_rules`` (:func:`check_param_rules`) or ``None``.

    Returns:
        ``[{"params": [...]}]`` (one group with the optimiser's settings) without rules or when every multiplier
        is 1; else one group per ``(lr_multiplier, wd_multiplier)`` with its ``lr``, ``weight_decay`` (when the
        optimiser config sets one) and ``lr_multiplier``.
    """
    rules = check_param_rules(rules)
    named = []  # (name, parameter, is_norm, is_bias), each parameter once, in model.parameters() order
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            name = f"{module_name}.{param_name}" if module_name else param_name
            named.append((name, param, isinstance(module, NORM_LAYERS), param_name == "bias"))
    if rules is not None:
        names = [name for name, *_ in named]
        for prefix in rules["modules"]:
            if not any(n == prefix or n.startswith(prefix + ".") for n in names):
                top = sorted({n.split(".")[0] for n in names})
                raise ConfigError(
                    f"param_rules.modules.{prefix} matches no parameter; top-level modules: {top}"
                )
    trainable = [entry for entry in named if entry[1].requires_grad]
    if not trainable:
        raise ConfigError("no parameter of the model requires a gradient: there is nothing to train")
    if rules is None:
        return [{"params": [param for _, param, *_ in trainable]}]
    lr, weight_decay = spec["lr"], spec.get("weight_decay")
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param, is_norm, is_bias in trainable:
        lr_mult, wd_mult = _multipliers(name, is_norm, is_bias, rules)
        if (lr_mult, wd_mult) not in groups:
            group = {"params": [], "lr": lr_mult * lr, "lr_multiplier": lr_mult}
            if weight_decay is not None:
                group["weight_decay"] = wd_mult * weight_decay
            groups[lr_mult, wd_mult] = group
        groups[lr_mult, wd_mult]["params"].append(param)
    if list(groups) == [(1.0, 1.0)]:  # neutral rules: exactly the single group of the reference
        return [{"params": groups[1.0, 1.0]["params"]}]
    return list(groups.values())


def build_optimizer(
    model: nn.Module, spec: Mapping[str, Any], rules: Mapping[str, Any] | None = None
) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimiser of ``spec`` over :func:`param_groups`."""
    _, cls = resolve_target(spec, "optimizer", torch.optim, torch.optim.Optimizer)
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_")}
    return cls(param_groups(model, spec, rules), **kwargs)
