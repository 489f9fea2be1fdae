"""``galleria layers MODEL``: the module tree with output shapes, to find layer names."""
from __future__ import annotations


import torch

from galleria.config import layer_matches, load_config
from galleria.errors import ConfigError
from galleria.extract.architecture import module_tree
from galleria.sources.models import load_model


TEXT_PROBE = 8


def layers(config_file: str, model_id: str | None) -> str:
    config = load_config(config_file)
    ids = [m.id for m in config.models]
    if model_id is None and len(ids) == 1:
        model_id = ids[0]
    cfg = next((m for m in config.models if m.id == model_id), None)
    if cfg is None:
        import difflib

        close = difflib.get_close_matches(model_id or "", ids, n=1)
        raise ConfigError(f"no model '{model_id}'" if model_id else "name a model", config.shown,
                          hint=(f"did you mean '{close[0]}'? " if close else "") + "models: " + ", ".join(ids))
    model = load_model(cfg, config.root)
    text = model.tokenizer is not None
    sample = torch.zeros(1, TEXT_PROBE, dtype=torch.long) if text else None  # token id 0 suits any vocabulary
    rows = module_tree(model, sample)
    chosen = [s.pattern for s in cfg.layers]
    width = max(len(row.name) + row.name.count(".") * 2 for row in rows) + 2
    shape_width = max([len("×".join(map(str, row.shape or ()))) for row in rows] + [6]) + 2
    seen = f"token ids, shapes for a window of {TEXT_PROBE} tokens" if text else \
        f"{cfg.preprocessing.channels}×{cfg.preprocessing.size[0]}×{cfg.preprocessing.size[1]}"
    lines = [f"{cfg.id}: {cfg.source}, {model.params:,} parameters, input {seen}",
             f"  {'layer':<{width}} {'module':<22} {'output':<{shape_width}} {'units':>6}  layout"]
    for row in rows:
        mark = "*" if any(layer_matches(row.name, p) for p in chosen) else " "
        indent = "  " * row.name.count(".")
        out = "×".join(map(str, row.shape)) if row.shape else "—"
        units = str(row.units) if row.units is not None else ""
        lines.append(f"{mark} {indent + row.name:<{width}} {row.module:<22} {out:<{shape_width}} {units:>6}  {row.layout}")
    lines.append("* chosen in site.yaml; layers: accepts these names and glob patterns like 'blocks.*', and NAME.input\n"
                 "  for the input of any module (a gated MLP's neurons: 'model.layers.*.mlp.down_proj.input')")
    return "\n".join(lines)
