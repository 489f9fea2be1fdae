"""Shared set-up for the benchmarks: the default gallery's model and inputs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from galleria.config import load_config
from galleria.extract.architecture import inspect_model
from galleria.sources.images import InputSet, discover
from galleria.sources.models import load_model

REPO = Path(__file__).resolve().parents[1]


def default_model_and_inputs():
    config = load_config(REPO / "site.yaml")
    model = load_model(config.models[0], config.root)
    layout = inspect_model(model, str(config.file))
    return config, model, layout, discover(config.inputs)


def first(inputs: InputSet, count: int) -> InputSet:
    """The first ``count`` inputs, repeated if the set is smaller, with a key of their own."""
    items = [inputs.items[i % len(inputs.items)] for i in range(count)]
    items = [dataclasses.replace(item, index=i, id=f"{item.id}-{i}") for i, item in enumerate(items)]
    return InputSet(tuple(items), (), f"{inputs.key}-{count}")
