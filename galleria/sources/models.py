"""Models named in site.yaml, built from torchvision, timm, the user's code or TorchScript."""
from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from galleria.config import ModelConfig
from galleria.errors import BuildError, GalleriaError, MissingExtra, ModelError
from galleria.sources.dictionaries import Dictionary, attach_dictionaries
from galleria.sources.recurrent import unroll_recurrent
from galleria.sources.taps import add_input_taps
from galleria.sources.weights import apply_weights


@dataclass
class LoadedModel:
    config: ModelConfig
    module: torch.nn.Module | None  # None once the stages that run it are done (the site stage never does)
    key: str  # hash of the architecture and every parameter: what cached results depend on
    labels: tuple[str, ...] | None  # class names, or for text models the tokenizer's vocabulary
    params: int
    tokenizer: object | None = None  # text models: a sources.text tokenizer


def load_model(cfg: ModelConfig, root: Path, given: torch.nn.Module | None = None) -> LoadedModel:
    """Build the module and load its weights (or copy ``given``, a model in memory: galleria.Gallery);
    nothing runs through it yet."""
    if cfg.source.startswith("transformers:") and cfg.pretrained is None:
        raise MissingExtra(f"skipped model '{cfg.id}': it needs pip install 'galleria[text]'")
    tokenizer = None
    if cfg.tokenizer is not None:
        from galleria.sources.text import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer, cfg.pretrained)
    module = build_module(cfg, root, given)
    module.eval()
    read_off = {id(p) for m in module.modules() if isinstance(m, Dictionary) for p in m.parameters()}
    params = sum(p.numel() for p in module.parameters() if id(p) not in read_off)  # the model's own
    labels = load_labels(cfg.labels) if cfg.labels is not None or tokenizer is None else tokenizer.labels
    return LoadedModel(cfg, module, model_key(module, cfg), labels, params, tokenizer)


def build_module(cfg: ModelConfig, root: Path, given: torch.nn.Module | None = None) -> torch.nn.Module:
    """The module ``cfg`` names, its weights loaded, ready to be watched. A ``given`` module is copied
    first: taps and unrolled cells are added to the copy, never to the caller's model."""
    kind, _, name = cfg.source.partition(":")
    try:
        if given is not None:
            module = copy.deepcopy(given)
            if any(kind.__name__ == "PreTrainedModel" for kind in type(module).__mro__):  # a transformers model:
                from galleria.sources.transformers_model import TransformerModel  # ids in, one tensor out

                module = TransformerModel(module)
        elif kind == "torchvision":
            import torchvision

            try:
                module = torchvision.models.get_model(name, weights=None, **cfg.kwargs)
            except ValueError:
                known = torchvision.models.list_models()
                close = difflib.get_close_matches(name, known, n=1)
                raise BuildError(f"model '{cfg.id}': torchvision has no model '{name}'"
                                 + (f" (did you mean '{close[0]}'?)" if close else "")) from None
        elif kind == "timm":
            try:
                import timm
            except ImportError:
                raise BuildError(f"model '{cfg.id}' needs timm: pip install timm") from None
            if not timm.is_model(name):
                close = difflib.get_close_matches(name, timm.list_models(), n=1)
                raise BuildError(f"model '{cfg.id}': timm has no model '{name}'"
                                 + (f" (did you mean '{close[0]}'?)" if close else ""))
            module = timm.create_model(name, pretrained=False, **cfg.kwargs)
        elif kind == "torchscript":
            module = _script_chain(cfg, root / name)
        elif kind == "transformers":
            from galleria.sources.transformers_model import load_transformer

            module = load_transformer(cfg.pretrained, cfg.id)
        else:
            module = _from_user_code(cfg, root)
    except GalleriaError:
        raise
    except TypeError as exc:
        raise BuildError(f"model '{cfg.id}': cannot build {cfg.source} with kwargs {cfg.kwargs}: {exc}") from None
    except Exception as exc:  # the user's constructor (or the library's) failed: their code, one line
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelError(f"model '{cfg.id}': building {cfg.source} raised {type(exc).__name__}"
                         + (f": {detail}" if detail else "")) from exc
    if not isinstance(module, torch.nn.Module):
        raise BuildError(f"model '{cfg.id}': {cfg.source} returned {type(module).__name__}, not a torch.nn.Module")
    if cfg.weights is not None:
        apply_weights(module, cfg.weights)
    module = unroll_recurrent(module)
    add_input_taps(module, [spec.pattern for spec in cfg.layers])  # after loading: taps hold no weights
    attach_dictionaries(module, cfg.id, cfg.layers)  # after loading: their weights are their own files'
    return module


class ScriptTap(torch.nn.Identity):
    """Marks where a TorchScript child's output passes, so a Python hook can see it."""

    def __init__(self, original_name: str):
        super().__init__()
        self.original_name = original_name


class ScriptChain(torch.nn.Module):
    """A TorchScript model run as the chain of its top-level children.

    Compiled code cannot carry Python hooks, so galleria calls the children itself, one after
    another, with a tap after each; the children's names are the layer names.
    """

    def __init__(self, script: torch.jit.ScriptModule):
        super().__init__()
        self.script = script
        self.order = [name for name, _ in script.named_children()]
        for name, child in script.named_children():
            self.add_module(name, ScriptTap(getattr(child, "original_name", type(child).__name__)))

    def forward(self, x):
        children = dict(self.script.named_children())
        for name in self.order:
            x = getattr(self, name)(children[name](x))
        return x


def _script_chain(cfg: ModelConfig, path: Path) -> ScriptChain:
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript; users with .pt files still need it
            warnings.simplefilter("ignore", FutureWarning)
            script = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise BuildError(f"{path}: not a TorchScript file: {str(exc).strip().splitlines()[0]}") from None
    chain = ScriptChain(script).eval()
    pre = cfg.preprocessing
    x = torch.rand(2, pre.channels, *pre.size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.inference_mode():
            same = torch.allclose(chain(x), script(x), rtol=1e-4, atol=1e-5)
    except (RuntimeError, TypeError):
        same = False
    if not same:
        raise BuildError(f"{path}: this TorchScript model is not a plain chain of its children, so galleria "
                         "cannot see its layers; give the model as Python code (module:callable) with a "
                         "state dict instead")
    return chain


def module_kind(module: torch.nn.Module) -> str:
    """The class name people know a layer by (TorchScript keeps it as original_name)."""
    return getattr(module, "original_name", None) or type(module).__name__


def hookable_names(module: torch.nn.Module) -> list[str]:
    """Names of the modules a forward hook can watch: compiled TorchScript modules are not."""
    return [name for name, m in module.named_modules() if name and not isinstance(m, torch.jit.ScriptModule)]


def _from_user_code(cfg: ModelConfig, root: Path) -> torch.nn.Module:
    module_name, _, attr = cfg.source.partition(":")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # so a models.py beside site.yaml imports
    try:
        target = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f" (name the module as Python imports it: '{module_name[:-3]}:{attr}')" \
            if module_name.endswith(".py") else ""
        raise BuildError(f"model '{cfg.id}': cannot import '{module_name}': {exc}{hint}") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise BuildError(f"model '{cfg.id}': '{module_name}' has no attribute '{attr}'")
        target = getattr(target, part)
    if isinstance(target, torch.nn.Module):
        return target
    if not callable(target):
        raise BuildError(f"model '{cfg.id}': {cfg.source} is neither a module nor callable")
    return target(**cfg.kwargs)


def load_labels(spec: str | tuple[str, ...] | None) -> tuple[str, ...] | None:
    if spec is None or isinstance(spec, tuple):
        return spec
    if spec == "torchvision:imagenet":
        from torchvision.models import ResNet18_Weights

        return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    return tuple(line.strip() for line in Path(spec).read_text(encoding="utf-8").splitlines() if line.strip())


def model_key(module: torch.nn.Module, cfg: ModelConfig) -> str:
    """Content hash of the architecture, the preprocessing and every weight."""
    digest = hashlib.sha256()
    digest.update(repr((cfg.source, sorted(cfg.kwargs.items()), cfg.preprocessing)).encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]
