"""Dictionaries on a layer: a sparse autoencoder's latents, or rows of directions, as a layer of units.

A dictionary becomes a submodule of the layer it reads (``<layer>.sae`` or ``<layer>.directions``),
called from a forward hook on that layer with its output; the hook leaves the model's own output as
it was. Every stage that finds layers by module name (the dry run, extraction, receptive fields, feature
visualization, attribution) then sees the latents as it sees any layer, with no path of its own.
Weights are read with safetensors: no code runs from the file.
"""
from __future__ import annotations

import json

import torch

from galleria.config import DictionaryConfig, LayerSpec
from galleria.errors import BuildError

ACTIVATIONS = ("relu", "jumprelu", "topk")
NORMS = ("none", "constant_norm_rescale", "layer_norm")  # SAELens' run-time input normalisations we apply


class Dictionary(torch.nn.Module):
    """Units computed from a layer's features (``d_in``): ``activation(((x - b_dec) @ W_enc + b_enc)``
    for an SAE, the plain dot products ``x @ W_enc`` for directions. Works on the dimension of the
    layer's output that has ``d_in`` features (the last, or the second: a conv map's channels; the
    layer entry's ``layout`` decides where both have), and gives its units in that dimension's place.

    ``W_dec`` [units, d_in] is what each unit writes back into the layer's space: an SAE's decoder
    rows, a direction itself; None for an SAE file without one. Output effects and related units
    are read off it. ``norm`` is SAELens' ``normalize_activations``, applied to each feature vector
    before b_dec as SAELens does: ``constant_norm_rescale`` scales it to a norm of sqrt(d_in),
    ``layer_norm`` removes its mean and divides by its standard deviation (+1e-5)."""

    def __init__(self, w_enc: torch.Tensor, b_enc: torch.Tensor | None, b_dec: torch.Tensor | None,
                 activation: str | None, threshold: torch.Tensor | None, k: int | None, where: str,
                 layout: str | None = None, w_dec: torch.Tensor | None = None, kind: str = "sae",
                 norm: str = "none"):
        super().__init__()
        self.layout, self.kind, self.norm = layout, kind, norm
        self.W_enc = torch.nn.Parameter(w_enc.float(), requires_grad=False)
        self.W_dec = None if w_dec is None else torch.nn.Parameter(w_dec.float(), requires_grad=False)
        self.b_enc = None if b_enc is None else torch.nn.Parameter(b_enc.float(), requires_grad=False)
        self.b_dec = None if b_dec is None else torch.nn.Parameter(b_dec.float(), requires_grad=False)
        self.threshold = None if threshold is None else torch.nn.Parameter(threshold.float(), requires_grad=False)
        self.activation, self.k, self.where = activation, k, where

    def _features(self, x: torch.Tensor) -> int:
        """The dimension of ``x`` that holds the layer's features."""
        d_in, last = self.W_enc.shape[0], x.dim() - 1
        fits = [dim for dim in dict.fromkeys((last, 1)) if 0 < dim and x.shape[dim] == d_in]
        if self.layout is not None:
            fits = [dim for dim in fits if dim == (1 if self.layout == "channels-first" else last)]
        elif len(fits) > 1 and x.dim() == 3:
            fits = [last]  # [batch, tokens, features]
        if len(fits) == 1:
            return fits[0]
        if fits:
            raise BuildError(f"{self.where}: the layer's output is {tuple(x.shape)}, and both its channels and its "
                             f"last dimension have {d_in} (d_in): say which with 'layout: channels-first' or "
                             "'layout: channels-last' on the entry")
        raise BuildError(f"{self.where}: the dictionary reads {d_in} features (d_in), but the layer's output "
                         f"is {tuple(x.shape)}: no dimension has {d_in}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim, last = self._features(x), x.dim() - 1  # dimensions counted from the front: ONNX export
        h = x.movedim(dim, last).to(self.W_enc.dtype)   # rejects a negative permutation
        if self.norm == "constant_norm_rescale":
            h = h * (self.W_enc.shape[0] ** 0.5 / h.norm(dim=-1, keepdim=True))
        elif self.norm == "layer_norm":
            h = h - h.mean(-1, keepdim=True)
            h = h / (h.std(-1, keepdim=True) + 1e-5)
        if self.b_dec is not None:
            h = h - self.b_dec
        pre = h @ self.W_enc
        if self.b_enc is not None:
            pre = pre + self.b_enc
        if self.activation == "relu":
            pre = torch.relu(pre)
        elif self.activation == "jumprelu":
            pre = pre * (pre > self.threshold)
        elif self.activation == "topk":
            kept = pre.topk(min(self.k, pre.shape[-1]), dim=-1)
            pre = torch.zeros_like(pre).scatter(-1, kept.indices, torch.relu(kept.values))
        return pre.movedim(last, dim)


def attach_dictionaries(module: torch.nn.Module, model_id: str, specs: tuple[LayerSpec, ...]) -> None:
    """Read every layer entry's dictionary and hang it on its layer (see the module's docstring)."""
    attached: dict[str, DictionaryConfig] = {}
    for spec in specs:
        found = spec.dictionary
        if found is None:
            continue
        where = f"model '{model_id}', layer '{found.host}', {found.kind} {found.path}"
        before = attached.setdefault(spec.pattern, found)
        if before.path != found.path:
            raise BuildError(f"{where}: the layer already reads {before.kind} {before.path}; one of each kind a layer")
        if before is not found:
            continue  # listed twice: one dictionary serves both entries
        try:
            host = module.get_submodule(found.host)
        except AttributeError:
            raise BuildError(f"{where}: the model has no module '{found.host}' (run 'galleria layers')") from None
        host.add_module(found.kind, load_dictionary(found, where, spec.layout))
        if type(host).forward is torch.nn.Sequential.forward:  # it runs every child: the dictionary too
            host.__class__ = _reading_only(type(host))
        host.register_forward_hook(_read_by(found.kind))


def dictionary_at(module: torch.nn.Module, name: str) -> Dictionary | None:
    """The dictionary a layer name refers to (``<host>.sae``, ``<host>.directions``), if it is one."""
    try:
        found = module.get_submodule(name)
    except AttributeError:  # not a module: a layer read at a module's input ("<module>.input")
        return None
    return found if isinstance(found, Dictionary) else None


def host_of(module: torch.nn.Module, name: str) -> str:
    """The layer whose output a layer's units are read from: a dictionary's host, else the layer itself."""
    return name.rpartition(".")[0] if dictionary_at(module, name) is not None else name


def _reading_only(cls: type) -> type:
    """A Sequential's class (same name) whose forward runs its own modules and not the dictionaries
    hung on it, which read its output from a hook instead."""
    def forward(self, input):
        for module in self:
            if not isinstance(module, Dictionary):
                input = module(input)
        return input
    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})


def _read_by(kind: str):
    def read(host: torch.nn.Module, args, output) -> None:
        if isinstance(output, (tuple, list)):
            output = output[0]
        getattr(host, kind)(output)  # its output is what hooks on "<host>.<kind>" see
    return read


def load_dictionary(found: DictionaryConfig, where: str, layout: str | None = None) -> Dictionary:
    """A SAELens folder (cfg.json and sae_weights.safetensors), a safetensors file of an SAE's tensors
    (W_enc, b_enc, optional b_dec, threshold for JumpReLU) or of directions (one 2-D tensor: a row each)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = found.path.is_dir()
    weights = found.path / "sae_weights.safetensors" if folder else found.path
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise BuildError(f"{where}: cannot read {weights.name}: {exc}") from None
    if found.kind == "directions":
        rows = [t for t in tensors.values() if t.dim() == 2]
        if len(rows) != 1:
            raise BuildError(f"{where}: a directions file holds one 2-D tensor (a direction per row); "
                             f"this one holds {len(rows)}")
        return Dictionary(rows[0].T, None, None, None, None, None, where, layout, rows[0], "directions")
    settings = json.loads((found.path / "cfg.json").read_text()) if folder else {}
    missing = [name for name in ("W_enc", "b_enc") if name not in tensors]
    if missing:
        raise BuildError(f"{where}: no tensor '{missing[0]}' (an SAE file holds W_enc [d_in, d_sae] and b_enc)")
    w_enc, b_enc = tensors["W_enc"], tensors["b_enc"]
    activation = _activation(settings, tensors, where)
    norm = settings.get("normalize_activations") or "none"
    if norm == "expected_average_only_in":
        raise BuildError(f"{where}: normalize_activations 'expected_average_only_in' scales by a factor estimated "
                         "in training and not saved with the weights: fold it in with SAELens' "
                         "sae.fold_activation_norm_scaling_factor(factor) and save again (it then says 'none')")
    if norm not in NORMS:
        raise BuildError(f"{where}: normalize_activations '{norm}' is not supported ({', '.join(NORMS)})")
    d_in = settings.get("d_in", w_enc.shape[0])
    if w_enc.dim() != 2 or w_enc.shape[0] != d_in or b_enc.shape != (w_enc.shape[1],):
        raise BuildError(f"{where}: W_enc is {tuple(w_enc.shape)} and b_enc {tuple(b_enc.shape)}; "
                         f"expected [d_in={d_in}, d_sae] and [d_sae]")
    w_dec = tensors.get("W_dec")
    if w_dec is not None and w_dec.shape != (w_enc.shape[1], d_in):
        raise BuildError(f"{where}: W_dec is {tuple(w_dec.shape)}; expected [d_sae={w_enc.shape[1]}, d_in={d_in}]")
    b_dec = tensors.get("b_dec") if settings.get("apply_b_dec_to_input", False) else None
    k = _k(settings, where) if activation == "topk" else None
    return Dictionary(w_enc, b_enc, b_dec, activation, tensors.get("threshold"), k, where, layout, w_dec, norm=norm)


def _activation(settings: dict, tensors: dict, where: str) -> str:
    """The encoder's activation from SAELens' cfg.json (its architecture, else activation_fn_str);
    a bare file's from its tensors: a threshold means JumpReLU."""
    architecture = settings.get("architecture", "standard")
    if architecture == "jumprelu" or (not settings and "threshold" in tensors):
        found = "jumprelu"
    elif architecture == "topk":
        found = "topk"
    elif architecture == "standard":
        found = settings.get("activation_fn_str", "relu")
    else:
        raise BuildError(f"{where}: SAE architecture '{architecture}' is not supported (standard, jumprelu, topk)")
    if found not in ACTIVATIONS:
        raise BuildError(f"{where}: activation '{found}' is not supported ({', '.join(ACTIVATIONS)})")
    if found == "jumprelu" and "threshold" not in tensors:
        raise BuildError(f"{where}: a JumpReLU SAE needs a 'threshold' tensor")
    return found


def _k(settings: dict, where: str) -> int:
    k = settings.get("k") or (settings.get("activation_fn_kwargs") or {}).get("k")
    if not k:
        raise BuildError(f"{where}: a TopK SAE's cfg.json gives its k (k, or activation_fn_kwargs.k)")
    return int(k)

