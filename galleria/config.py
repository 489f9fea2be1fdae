"""site.yaml: typed, validated before any heavy work, errors that name file, line and key.

Each key is declared once (its JSON Schema, default and description: galleria/schema.py makes
site.yaml's schema from them), and every section is read by a small function that reads the keys
declared for it; an unknown key, a wrong type or a missing field raises :class:`ConfigError` with a did-you-mean suggestion, the way MkDocs
reports its config. Paths are resolved against the folder holding site.yaml.
"""
from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from galleria.errors import ConfigError, UsageError
from galleria.probe.precision import PRECISIONS

SOURCE_PREFIXES = ("torchvision:", "timm:", "torchscript:", "transformers:")
INPUT_KINDS = ("image", "text")
INPUT_LABELS = ("folders",)  # where an image set's own classes are
REMAP_MODES = ("by-position",)
RENAMED = {"intervals": "bands", "per_interval": "per_band"}  # keys of earlier versions, for a clear error
CARDS = ("auto", "all", "none")  # site.cards: which unit pages get a preview card of their own
DEVICES = ("auto", "cpu", "cuda", "mps")  # extract.device, or a numbered GPU:
NUMBERED_GPU = r"cuda:\d+"
LAYOUTS = ("channels-first", "channels-last", "tokens")  # where a layer's units are: see extract/layout.py
SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PUBLIC_URL = re.compile(r"^https?://[^/\s]+")
SITE_FOLDERS = {"assets", "search", "images", "text", "404.html", "sitemap.xml", "index.html"}  # what a model id cannot be


# --- records -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SiteConfig:
    title: str
    description: str
    url: str | None  # public url, e.g. https://me.github.io/gallery/
    output_dir: Path
    theme_dir: Path | None
    content_dir: Path
    cache_dir: Path
    cards: str = "auto"  # which unit pages draw a link-preview card of their own: auto, all or none

    @property
    def base_path(self) -> str:
        """The url path the site is published under: '/galleria/' for https://you.github.io/galleria/."""
        return urlparse(self.url).path if self.url else "/"


@dataclass(frozen=True)
class WeightsConfig:
    path: Path | None  # a file on disk, or
    package: str | None  # a file inside this installed package
    file: str | None
    key: str | None  # sub-dictionary of the checkpoint holding the state dict
    remap: str | tuple[tuple[str, str], ...] | None  # "by-position" or prefix replacements
    trust: bool  # allow unpickling arbitrary code: only for checkpoints you made


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int]  # (height, width) the model sees
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


DICTIONARY_KINDS = ("sae", "directions")


@dataclass(frozen=True)
class DictionaryConfig:
    """What a layer entry reads its units through: a sparse autoencoder's encoder (``sae``: a
    SAELens folder or a safetensors file) or rows of vectors (``directions``), on ``host``'s output."""

    kind: str  # one of DICTIONARY_KINDS; the units' layer is named "<host>.<kind>"
    path: Path
    host: str  # the module whose output it reads


@dataclass(frozen=True)
class LayerSpec:
    pattern: str  # exact module name or glob
    units: tuple[int, ...] | None  # None: every unit
    line: int | None
    featureviz: "FeatureVizConfig | None" = None  # None: the model's settings
    layout: str | None = None  # "channels-first", "channels-last" or "tokens"; None: decided from the model
    dictionary: DictionaryConfig | None = None  # its units are a dictionary's on the layer (pattern "<host>.<kind>")


@dataclass(frozen=True)
class ProbeConfig:
    """The live probe ("try your own" on unit and layer pages): on, and how its weights are stored."""

    enabled: bool = True
    precision: str = "float16"  # float32, float16 or int8 (see galleria/probe/precision.py)
    max_megabytes: float = 50  # a larger download is left out of the page (galleria serve still answers)


@dataclass(frozen=True)
class FeatureVizConfig:
    """Feature visualization settings; a layer's override the model's, which override the site's."""

    first: int | None = 16  # the first N shown units; None: the selection in ``units``
    units: tuple[int, ...] | None = None  # with first None: these unit numbers (None: every one)
    steps: int = 256
    size: int = 128  # image side in pixels
    batch: int = 16  # images optimized together
    negative: bool = True  # also an image that drives the unit down
    neuron: bool = False  # also an image for the unit's centre position alone
    diversity: int = 0  # images in a set pushed to differ from each other (0: none)
    seed: int = 0

    def chosen(self, shown: tuple[int, ...]) -> set[int]:
        if self.first is not None:
            return set(shown[:self.first])
        return set(shown) if self.units is None else set(shown) & set(self.units)


@dataclass(frozen=True)
class ModelConfig:
    id: str
    title: str
    description: str
    source: str
    kwargs: dict[str, Any]
    weights: WeightsConfig | None
    preprocessing: Preprocessing
    labels: str | tuple[str, ...] | None
    layers: tuple[LayerSpec, ...]
    line: int | None
    featureviz: FeatureVizConfig = FeatureVizConfig()
    tokenizer: str | None = None  # "chars:PATH", a tokenizer.json path, or "model" (a transformers folder's own)
    inputs: tuple[str, ...] | None = None  # ids of the input sets it reads; None: every set of its kind
    pretrained: Path | None = None  # a transformers model's folder (config.json and weights)
    probe: ProbeConfig = ProbeConfig()

    @property
    def kind(self) -> str:
        """What the model reads: "text" (token ids) or "image" (pixels)."""
        return "text" if self.tokenizer is not None else "image"

    def spec_for(self, layer: str) -> LayerSpec | None:
        """The first layer entry whose name or pattern matches ``layer``."""
        return next((s for s in self.layers if layer_matches(layer, s.pattern)), None)


def layer_matches(name: str, pattern: str) -> bool:
    """Whether a layer (or module) name is what a layer entry names: the name itself or a glob."""
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


@dataclass(frozen=True)
class CropScheme:
    scales: tuple[int, ...]  # n means an n x n grid of crops, 1 the whole image
    overlap: float  # share of a crop that overlaps its neighbour


@dataclass(frozen=True)
class InputSetConfig:
    id: str
    root: Path  # folder the patterns are relative to
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    crops: CropScheme
    limit: int | None
    line: int | None
    kind: str = "image"  # or "text"
    field: str | None = None  # JSON Lines: the key holding each record's text
    python: str | None = None  # "module:attribute" naming a str, a list of str or a dict of name: str
    window: int = 128  # text: tokens per window
    overlap: int = 32  # text: tokens shared by neighbouring windows
    labels: str | None = None  # images: "folders", each image's class the folder it is in (automatic labels)


@dataclass(frozen=True)
class ExamplesConfig:
    top: int
    bottom: int
    tile_size: int
    heatmap: bool
    bands: int = 4  # bands across each unit's range of per-input peaks; 0 shows none
    per_band: int = 3  # examples sampled per band
    context: int | None = None  # text: tokens shown each side of the extreme one (None: 40 characters or 12 subwords)


@dataclass(frozen=True)
class AttributionConfig:
    inputs: int = 128  # inputs sampled for the gradient views; 0 turns them off
    examples: int = 2  # per unit, its strongest sampled inputs that "built from" averages over; 0: off


@dataclass(frozen=True)
class ExtractConfig:
    batch_size: int
    device: str  # "auto", "cpu", "cuda", "cuda:1", ...


@dataclass(frozen=True)
class Config:
    file: Path
    site: SiteConfig
    models: tuple[ModelConfig, ...]
    inputs: tuple[InputSetConfig, ...]
    examples: ExamplesConfig
    extract: ExtractConfig
    seed: int
    warnings: tuple[str, ...] = field(default=())
    attribution: AttributionConfig = AttributionConfig()
    shown: str = ""  # how errors name it: the path as given, or "Gallery" for one made in memory

    @property
    def root(self) -> Path:
        return self.file.parent


# --- what each key means -----------------------------------------------------------------
# Every key of site.yaml is declared once, here: the sections below read what they declare (an
# undeclared key is an error), and galleria/schema.py turns the same declarations into the JSON
# Schema that editors complete site.yaml with and show each description from.

@dataclass(frozen=True)
class Option:
    """One key: its value's JSON Schema, what it is for (an editor shows it on hover) and its default."""

    value: Any  # JSON Schema; a section's options (a dict of Option) in it stand for a mapping of them
    doc: str
    default: Any = None  # what an absent key reads as; None also where it depends on other keys (doc says how)
    required: bool = False


STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
COUNT = {"type": "integer", "minimum": 0}
POSITIVE = {"type": "integer", "minimum": 1}
STRINGS = {"type": "array", "items": STRING}
STRING_OR_LIST = {"anyOf": [STRING, STRINGS]}
RANGE = r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?"  # a unit number, or a range like '0-63'
RANGES = f"^{RANGE}(,{RANGE})*$"  # several, like '0-63, 100'
UNIT_SELECTION = [{"type": "string", "pattern": RANGES + "|^all$"},
                  {"type": "array", "items": {"anyOf": [COUNT, {"type": "string", "pattern": RANGES}]}}]


def choice(words) -> dict:
    return {"enum": list(words)}


FEATUREVIZ = {
    "units": Option({"anyOf": [COUNT, {"const": False}, *UNIT_SELECTION]},
                    "Which units of each layer get images: the first N, 'all', a selection like '0-7, 12', "
                    "or false for none.", FeatureVizConfig.first),
    "steps": Option(POSITIVE, "Optimization steps per image: more give sharper images and take longer.",
                    FeatureVizConfig.steps),
    "size": Option({"type": "integer", "minimum": 16}, "Side of each optimized image, in pixels.",
                   FeatureVizConfig.size),
    "batch": Option(POSITIVE, "Images optimized together; the main lever on speed, and on memory.",
                    FeatureVizConfig.batch),
    "negative": Option(BOOLEAN, "Also optimize an image that drives the unit down.", FeatureVizConfig.negative),
    "neuron": Option(BOOLEAN, "Also optimize an image for the unit at the centre position alone.",
                     FeatureVizConfig.neuron),
    "diversity": Option({"type": "integer", "minimum": 0, "not": {"const": 1}},
                        "Images in a set pushed to differ from each other: 0 for none, or 2 and more.",
                        FeatureVizConfig.diversity),
    "seed": Option(INTEGER, "Random seed of the starting images.", FeatureVizConfig.seed),
}
FEATUREVIZ_ENTRY = {"anyOf": [BOOLEAN, FEATUREVIZ]}  # false: off; a mapping overrides the level above

PROBE = {
    "precision": Option(choice(PRECISIONS), "How the probe's weights are stored for the page: float32, "
                        "float16 (half the download) or int8 (a quarter).", ProbeConfig.precision),
    "max_megabytes": Option({"type": "number", "exclusiveMinimum": 0}, "The largest probe download a page "
                            "may carry; a larger model is left out of the page.", ProbeConfig.max_megabytes),
}
PROBE_ENTRY = {"anyOf": [BOOLEAN, PROBE]}  # false: no probe; a mapping overrides the level above

SITE = {
    "title": Option(STRING, "The gallery's name, in the header and title of every page.", "galleria"),
    "description": Option(STRING, "One or two sentences on the home page and in link previews.", ""),
    "url": Option({"type": "string", "pattern": PUBLIC_URL.pattern}, "The site's public address, e.g. "
                  "https://you.github.io/gallery/; set it for canonical links, sitemap.xml and link previews."),
    "output_dir": Option(STRING, "Folder `galleria build` writes the site into (replaced on every build), "
                         "relative to site.yaml.", "site"),
    "theme_dir": Option(STRING, "Folder of templates and assets that override the built-in theme's, file "
                        "by file."),
    "content_dir": Option(STRING, "Folder of Markdown notes, their paths mirroring the pages' urls.", "content"),
    "cache_dir": Option(STRING, "Folder of cached activations and images, reused by the next build.",
                        ".galleria-cache"),
    "cards": Option(choice(CARDS), "Which unit pages get a link-preview card of their own: auto (those "
                    "with a note or feature visualization), all or none.", SiteConfig.cards),
}

WEIGHTS = {
    "path": Option(STRING, "The weights file (.pth, .pt or .safetensors), relative to site.yaml."),
    "package": Option(STRING, "An installed Python package holding the weights file (then give `file`)."),
    "file": Option(STRING, "The weights file's path inside `package`."),
    "key": Option(STRING, "The entry of the checkpoint that holds the state dict, e.g. state_dict."),
    "remap": Option({"anyOf": [choice(REMAP_MODES), {"type": "object", "additionalProperties": STRING}]},
                    "How the file's tensor names become the model's: by-position, or a mapping of old "
                    "prefix: new prefix."),
    "trust": Option(BOOLEAN, "Allow a checkpoint that runs code when unpickled: only for files you made "
                    "yourself.", False),
}

PREPROCESSING = {
    "size": Option({"anyOf": [POSITIVE, {"type": "array", "items": POSITIVE, "minItems": 2, "maxItems": 2}]},
                   "The image size the model reads: one side, or [height, width], in pixels.", 224),
    "channels": Option(POSITIVE, "Colour channels the model reads: 3 for RGB, 1 for greyscale.", 3),
    "mean": Option({"anyOf": [NUMBER, {"type": "array", "items": NUMBER}]},
                   "Subtracted from each channel's pixel values (scaled to 0-1): one number, or one per "
                   "channel.", 0.0),
    "std": Option({"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                             {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}}]},
                  "Each channel's values are divided by it after the mean is subtracted: one number, or one "
                  "per channel.", 1.0),
}

LAYER = {
    "name": Option(STRING, "The module's name as `galleria layers` lists it, or a glob pattern like "
                   "'blocks.*'.", required=True),
    "units": Option({"anyOf": [COUNT, *UNIT_SELECTION]}, "This layer's units: 'all', one number, a list, or "
                    "ranges like '0-63, 100' (default: the model's `units`)."),
    "featureviz": Option(FEATUREVIZ_ENTRY, "Feature visualization for this layer: false turns it off, a "
                         "mapping overrides the model's settings."),
    "layout": Option(choice(LAYOUTS), "Where the units are in the layer's output, when galleria cannot tell: "
                     "channels-first, channels-last or tokens."),
    "sae": Option(STRING, "A sparse autoencoder on this layer's output whose latents become the units: a "
                  "SAELens folder or a .safetensors file."),
    "directions": Option(STRING, "A .safetensors file of one 2-D tensor, a direction per row, read on this "
                         "layer's output as its units."),
}

MODEL = {
    "id": Option({"type": "string", "pattern": SLUG.pattern, "not": choice(sorted(SITE_FOLDERS))},
                 "The model's url segment: letters, digits, '-', '_' and '.'.", required=True),
    "title": Option(STRING, "The model's name on its pages (default: its id)."),
    "description": Option(STRING, "A sentence or two on the model's page.", ""),
    "source": Option(STRING, "Where the model comes from: torchvision:NAME, timm:NAME, torchscript:PATH, "
                     "transformers:FOLDER or package.module:callable.", required=True),
    "kwargs": Option({"type": "object"}, "Keyword arguments for the call that builds the model.", {}),
    "weights": Option({"anyOf": [STRING, WEIGHTS]}, "The weights to load: a file relative to site.yaml, or "
                      "a mapping (path or package and file, key, remap, trust)."),
    "preprocessing": Option(PREPROCESSING, "How an image becomes the tensor the model reads."),
    "labels": Option({"anyOf": [STRING, {"type": "array", "items": {"type": ["string", "number"]}}]},
                     "Class names, for the classes each unit votes for: torchvision:imagenet, a text file "
                     "with one per line, or a list."),
    "layers": Option({"type": "array", "minItems": 1, "items": {"anyOf": [STRING, LAYER]}},
                     "The layers to show: module names or glob patterns, or mappings that set a layer's "
                     "own units and settings; `galleria layers` lists them.", required=True),
    "units": Option({"anyOf": [COUNT, *UNIT_SELECTION]}, "Which units of every layer to show: 'all', one "
                    "number, a list, or ranges like '0-63, 100'.", "all"),
    "featureviz": Option(FEATUREVIZ_ENTRY, "Feature visualization for this model's layers: false turns it "
                         "off, a mapping overrides the site-wide settings."),
    "tokenizer": Option(STRING, "Makes this a text model: chars:VOCAB.json, a tokenizer.json file, or model "
                        "(a transformers folder's own, the default for transformers: sources)."),
    "inputs": Option(STRING_OR_LIST, "The ids of the input sets it reads (default: every set of its kind)."),
    "probe": Option(PROBE_ENTRY, "The live probe for this model: false leaves it out, a mapping overrides "
                    "the site-wide settings."),
}

CROPS = {
    "scales": Option({"type": "array", "minItems": 1, "items": POSITIVE}, "Grids each image is cut into: 1 "
                     "is the whole image, n an n x n grid of crops.", [1]),
    "overlap": Option({"type": "number", "minimum": 0, "exclusiveMaximum": 1}, "The share of a crop that "
                      "overlaps its neighbour, from 0 up to (not including) 1.", 0.0),
}

INPUT = {
    "id": Option(STRING, "The set's name, for models' `inputs` and its pages' urls (default: from its path)."),
    "type": Option(choice(INPUT_KINDS), "What the set holds: image, or text (implied by python, field or "
                   "window)."),
    "path": Option(STRING, "A folder, a file or a glob like 'photos/**/*.jpg', relative to site.yaml (or to "
                   "`package`)."),
    "package": Option(STRING, "An installed Python package whose files the set reads."),
    "python": Option(STRING, "Text from Python: module:attribute naming a str, a list of str or a dict of "
                     "name: str."),
    "field": Option(STRING, "For JSON Lines files: the key holding each record's text."),
    "include": Option(STRING_OR_LIST, "Glob patterns of the files to read, relative to the folder.", ["*"]),
    "exclude": Option(STRING_OR_LIST, "Glob patterns of files to leave out.", []),
    "crops": Option(CROPS, "How images are cut into crops, each an example of its own."),
    "limit": Option(INTEGER, "Read at most this many files."),
    "labels": Option(choice(INPUT_LABELS), "Images: where their classes are, for automatic labels: folders "
                     "(each image's class is the folder it is in, as in an ImageFolder; include then "
                     "defaults to '*/*')."),
    "window": Option(POSITIVE, "Text: tokens per window.", InputSetConfig.window),
    "overlap": Option(COUNT, "Text: tokens shared by neighbouring windows (default: a quarter of the window, "
                      "at most 32)."),
}

EXAMPLES = {
    "top": Option(POSITIVE, "Inputs that excite each unit most, shown on its page.", 9),
    "bottom": Option(COUNT, "Inputs that excite each unit least, shown on its page.", 5),
    "tile_size": Option(POSITIVE, "Side of each example's image tile, in pixels.", 112),
    "heatmap": Option(BOOLEAN, "Lay the unit's activation map over each example.", True),
    "bands": Option({"type": "integer", "minimum": 0, "maximum": 16}, "Bands across each unit's range of "
                    "peaks, each with a sample of examples; 0 shows none.", ExamplesConfig.bands),
    "per_band": Option(POSITIVE, "Examples sampled per band.", ExamplesConfig.per_band),
    "context": Option(POSITIVE, "Text: tokens shown each side of the strongest one (default: 40 characters, "
                      "or 12 subwords)."),
}

EXTRACT = {
    "batch_size": Option(POSITIVE, "Inputs run through the model together.", 32),
    "device": Option({"anyOf": [choice(DEVICES), {"type": "string", "pattern": f"^{NUMBERED_GPU}$"}]},
                     "Where the model runs: auto, cpu, cuda, cuda:N or mps.", "auto"),
}

ATTRIBUTION = {
    "inputs": Option(COUNT, "Inputs sampled for the gradient views (class effects, built from); 0 turns "
                     "them off.", AttributionConfig.inputs),
    "examples": Option(COUNT, "Per unit, its strongest sampled inputs that built from averages over; 0 turns "
                       "it off.", AttributionConfig.examples),
}

TOP = {
    "site": Option(SITE, "The site as a whole: its title, address and folders."),
    "models": Option({"type": "array", "minItems": 1, "items": MODEL}, "The models to open up, each with "
                     "the layers to show.", required=True),
    "inputs": Option({"type": "array", "minItems": 1, "items": {"anyOf": [STRING, INPUT]}},
                     "The input sets the models read: folders, globs, package files or text.", required=True),
    "examples": Option(EXAMPLES, "The dataset examples on each unit's page."),
    "extract": Option(EXTRACT, "How activations are computed."),
    "attribution": Option(ATTRIBUTION, "The gradient views: class effects of inner layers, and built from."),
    "featureviz": Option(FEATUREVIZ_ENTRY, "Images optimized to excite each unit: false turns them off; a "
                         "model or layer entry may override any setting."),
    "probe": Option(PROBE_ENTRY, "The live probe (try your own input in the page): false turns it off; a "
                    "model entry may override it."),
    "seed": Option(INTEGER, "A random seed, kept with the config (no build stage reads it at present).", 0),
}


# --- YAML with line numbers --------------------------------------------------------------

class _Map(dict):
    """A mapping that remembers the line of itself and of each key."""

    line: int | None = None
    key_lines: dict[str, int]


class _Seq(list):
    line: int | None = None
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        result = _Map()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise ConfigError("duplicate key", line=key_node.start_mark.line + 1, key=key)
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(self, node, deep=False):
        result = _Seq(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_sequence)


_DECLARED = object()  # get()'s default: the option's own


class _Section:
    """Reads one mapping by its declared options: a key not declared is reported by name, with the
    closest declared one."""

    def __init__(self, data: Any, file: str, path: str, line: int | None, options: dict[str, Option]):
        if data is None:
            data = _Map()
            data.key_lines = {}
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping, got {_kind(data)}", file, line, path or None)
        self.data, self.file, self.path, self.options = data, file, path, options
        self.line = getattr(data, "line", line)
        known = tuple(options)
        for key in data:
            if key in RENAMED and RENAMED[key] in known:
                raise ConfigError(f"'{key}' is now called '{RENAMED[key]}'", file, self.key_line(key),
                                  self._name(key), f"rename it to {RENAMED[key]}")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(known)
                raise ConfigError(f"unknown key '{key}'", file, self.key_line(key), self._name(key), hint)

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def key_line(self, key: str) -> int | None:
        return getattr(self.data, "key_lines", {}).get(key, self.line)

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, self.file, self.key_line(key), self._name(key), hint)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _DECLARED, *,
            hint: str | None = None) -> Any:
        """The key's value, checked to be of ``kind``; when absent, ``default`` (``...``: required)
        or else the declared default."""
        if key not in self.data or self.data[key] is None:
            if default is _DECLARED:
                option = self.options[key]
                default = ... if option.required else option.default
            if default is ...:
                raise ConfigError(f"missing required key '{key}'", self.file, self.line,
                                  self.path or None, hint)
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if bool not in kinds and isinstance(value, bool) or not isinstance(value, kinds):
            if float in kinds and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise self.error(key, f"expected {wanted}, got {_kind(value)}", hint)
        return value

    def positive_int(self, key: str, default: Any = _DECLARED) -> int:
        value = self.get(key, int, default)
        if value < 1:
            raise self.error(key, f"must be at least 1, got {value}")
        return value

    def section(self, key: str) -> "_Section":
        """The mapping under ``key``, read by the options declared for it."""
        return _Section(self.data.get(key), self.file, self._name(key), self.key_line(key),
                        _section_options(self.options[key].value))


def _section_options(value: Any) -> dict[str, Option]:
    """The options of the mapping a key's value may be (featureviz: true, false or a mapping)."""
    return next(schema for schema in value.get("anyOf", [value])
                if isinstance(next(iter(schema.values())), Option))


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    for kind, name in ((str, "a string"), (int, "an integer"), (float, "a number"),
                       (list, "a list"), (dict, "a mapping")):
        if isinstance(value, kind):
            return f"{name} ({value!r})" if kind in (str, int, float) else name
    return "nothing" if value is None else type(value).__name__


# --- sections ----------------------------------------------------------------------------

def load_config(path: str | Path, site_url: str | None = None) -> Config:
    """Read and validate site.yaml; raises ConfigError naming the file, line and key.

    ``site_url`` (``--site-url``) replaces site.url: a CI job learns the Pages address only when
    it runs, and should not have to edit the file."""
    return with_site_url(_load(Path(path)), site_url)


def with_site_url(config: Config, site_url: str | None, given_as: str = "--site-url") -> Config:
    """``config`` with ``site_url`` as site.url (None: as it is); a UsageError naming it
    (``given_as``) when it is not an absolute http(s) url."""
    if site_url is None:
        return config
    url = _public_url(site_url)
    if url is None:
        raise UsageError(f"{given_as} {site_url}: not an absolute http(s) url (e.g. https://you.github.io/gallery/)")
    return replace(config, site=replace(config.site, url=url))


def _public_url(url: str) -> str | None:
    """An absolute http(s) url ending in '/', as pages are linked below it; None if it is not one."""
    if not PUBLIC_URL.match(url):
        return None
    return url if url.endswith("/") else url + "/"


def _load(path: Path) -> Config:
    file = str(path)
    if not path.is_file():
        raise ConfigError("config file not found", file,
                          hint="run galleria in the folder holding site.yaml, or pass -f PATH")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"invalid YAML: {exc.problem}", file,
                          mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file) from None
    except ConfigError as exc:  # raised by the loader, which does not know the file name
        raise ConfigError("duplicate key", file, exc.line, exc.key, "each key may appear once") from None
    return config_from_data(data, path.resolve(), file)


def config_from_data(data: Any, file: Path, shown: str, objects: dict[str, str] | None = None) -> Config:
    """Validate site.yaml's content (``data``, as YAML reads it) as if read from ``file``, paths
    resolved beside it; errors name it as ``shown``. ``objects`` names, by model id, models given as
    objects in memory (galleria.Gallery): their entries have no source; the value is what their
    source reads as."""
    # YAML's mappings carry their lines; settings given in Python (galleria.Gallery) have none to name
    top = _Section(data, shown, "", None if type(data) is dict else 1, TOP)
    root = file.parent
    warnings: list[str] = []
    site = _site(top.section("site"), root)
    featureviz = _featureviz(top, "featureviz", FeatureVizConfig())
    models = _models(top, root, warnings, featureviz, _probe(top, ProbeConfig()), objects or {})
    inputs = _inputs(top, root)
    _match_inputs(top, models, inputs)
    examples_section = top.section("examples")
    examples = ExamplesConfig(
        top=examples_section.positive_int("top"),
        bottom=examples_section.get("bottom", int),
        tile_size=examples_section.positive_int("tile_size"),
        heatmap=examples_section.get("heatmap", bool),
        bands=examples_section.get("bands", int),
        per_band=examples_section.positive_int("per_band"),
        context=examples_section.positive_int("context", 1) if "context" in examples_section.data else None,
    )
    for name in ("bottom", "bands"):
        if getattr(examples, name) < 0:
            raise examples_section.error(name, "must be 0 or more")
    if examples.bands > 16:
        raise examples_section.error("bands", f"at most 16 bands, got {examples.bands}",
                                     "a handful reads best; 4 is the default")
    extract_section = top.section("extract")
    device = extract_section.get("device", str)
    if device not in DEVICES and not re.fullmatch(NUMBERED_GPU, device):
        raise extract_section.error("device", f"unknown device '{device}'",
                                    "use auto, cpu, cuda, cuda:N or mps")
    extract = ExtractConfig(batch_size=extract_section.positive_int("batch_size"), device=device)
    seed = top.get("seed", int)
    attribution_section = top.section("attribution")
    attribution = AttributionConfig(attribution_section.get("inputs", int),
                                    attribution_section.get("examples", int))
    for name in ("inputs", "examples"):
        if getattr(attribution, name) < 0:
            raise attribution_section.error(name, "must be 0 or more", "0 turns the view off")
    return Config(file, site, models, inputs, examples, extract, seed, attribution=attribution, shown=shown,
                  warnings=tuple(warnings))


def _site(s: _Section, root: Path) -> SiteConfig:
    given = s.get("url", str)
    url = None if given is None else _public_url(given)
    if given is not None and url is None:
        raise s.error("url", f"'{given}' is not an absolute http(s) url", "e.g. https://you.github.io/gallery/")
    theme_dir = s.get("theme_dir", str)
    if theme_dir is not None and not (root / theme_dir).is_dir():
        raise s.error("theme_dir", f"folder '{theme_dir}' does not exist",
                      "create it or remove the key")
    return SiteConfig(
        title=s.get("title", str),
        description=s.get("description", str),
        url=url,
        output_dir=root / s.get("output_dir", str),
        theme_dir=root / theme_dir if theme_dir else None,
        content_dir=root / s.get("content_dir", str),
        cache_dir=root / s.get("cache_dir", str),
        cards=_choice(s, "cards"),
    )


def _items(top: _Section, key: str) -> list[tuple[Any, int | None]]:
    items = top.get(key, list, hint=f"add a '{key}:' list")
    if not items:
        raise top.error(key, "must list at least one entry")
    lines = getattr(items, "item_lines", [top.key_line(key)] * len(items))
    return list(zip(items, lines))


def _featureviz(parent: _Section, key: str, inherited: FeatureVizConfig) -> FeatureVizConfig:
    """A featureviz entry: false (off), or a mapping whose keys override the inherited settings."""
    raw = parent.data.get(key) if parent.data else None
    if raw is None:
        return inherited
    if raw is False:
        return replace(inherited, first=0)
    if raw is True:
        return inherited
    s = parent.section(key)
    first, units = inherited.first, inherited.units
    if "units" in s.data:
        value = s.data["units"]
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise s.error("units", f"must be 0 or more, got {value}", "0 turns feature visualization off")
            first, units = value, None
        elif value is False:
            first, units = 0, None
        else:
            first, units = None, _units(s, "units", value)
    size = s.positive_int("size", inherited.size)
    if size < 16:
        raise s.error("size", f"images of {size} px are too small to show anything", "use 64 or more")
    diversity = s.get("diversity", int, inherited.diversity)
    if diversity < 0 or diversity == 1:
        raise s.error("diversity", f"a diverse set needs 2 or more images, got {diversity}", "use 0 (off) or 2-8")
    return FeatureVizConfig(first=first, units=units, steps=s.positive_int("steps", inherited.steps), size=size,
                            batch=s.positive_int("batch", inherited.batch),
                            negative=s.get("negative", bool, inherited.negative),
                            neuron=s.get("neuron", bool, inherited.neuron), diversity=diversity,
                            seed=s.get("seed", int, inherited.seed))


def _probe(parent: _Section, inherited: ProbeConfig) -> ProbeConfig:
    """A probe entry: false (off), true, or {precision, max_megabytes} overriding the inherited settings."""
    raw = parent.data.get("probe") if parent.data else None
    if raw is None or raw is True:
        return inherited
    if raw is False:
        return replace(inherited, enabled=False)
    s = parent.section("probe")
    limit = s.get("max_megabytes", (int, float), inherited.max_megabytes)
    if not limit > 0:
        raise s.error("max_megabytes", f"must be more than 0, got {limit}", "use probe: false to turn it off")
    return ProbeConfig(True, _choice(s, "precision", inherited.precision), float(limit))


def _models(top: _Section, root: Path, warnings: list[str], featureviz: FeatureVizConfig,
            probe: ProbeConfig, objects: dict[str, str]) -> tuple[ModelConfig, ...]:
    models = []
    seen: set[str] = set()
    for i, (data, line) in enumerate(_items(top, "models")):
        s = _Section(data, top.file, f"models[{i}]", line, MODEL)
        model_id = _slug(s, "id")
        if model_id in SITE_FOLDERS:
            raise s.error("id", f"'{model_id}' is a folder of the site itself", "choose another model id")
        model_viz = _featureviz(s, "featureviz", featureviz)
        if model_id in seen:
            raise s.error("id", f"model id '{model_id}' is used twice", "ids must be unique")
        seen.add(model_id)
        if model_id in objects:
            source = objects[model_id]
        else:
            source = s.get("source", str, hint="e.g. torchvision:resnet18, timm:NAME or package.module:callable")
            _check_source(s, source, root)
        pretrained = _pretrained_dir(s, source, root)
        tokenizer = _tokenizer(s, source, root)
        model_inputs = s.get("inputs", (str, list))
        if isinstance(model_inputs, str):
            model_inputs = [model_inputs]
        default_units = _units(s, "units", s.data.get("units"))
        layers_data = s.get("layers", list, hint="list module names or glob patterns; run 'galleria layers'")
        if not layers_data:
            raise s.error("layers", "must list at least one layer", "run 'galleria layers' to see names")
        layer_lines = getattr(layers_data, "item_lines", [s.key_line("layers")] * len(layers_data))
        layers = []
        for j, (layer, layer_line) in enumerate(zip(layers_data, layer_lines)):
            if isinstance(layer, str):
                layers.append(LayerSpec(layer, default_units, layer_line))
                continue
            ls = _Section(layer, top.file, f"models[{i}].layers[{j}]", layer_line, LAYER)
            dictionary = _dictionary(ls, root)
            layers.append(LayerSpec(ls.get("name", str) if dictionary is None else f"{dictionary.host}.{dictionary.kind}",
                                    _units(ls, "units", ls.data.get("units"), default_units),
                                    layer_line, _featureviz(ls, "featureviz", model_viz), _layout(ls), dictionary))
        models.append(ModelConfig(
            id=model_id,
            title=s.get("title", str, model_id),
            description=s.get("description", str),
            source=source,
            kwargs=dict(s.get("kwargs", dict)),
            weights=_weights(s, root),
            preprocessing=_preprocessing(s.section("preprocessing")),
            labels=_labels(s, root),
            layers=tuple(layers),
            line=line,
            featureviz=model_viz,
            tokenizer=tokenizer,
            inputs=tuple(map(str, model_inputs)) if model_inputs is not None else None,
            pretrained=pretrained,
            probe=_probe(s, probe),
        ))
    return tuple(models)


def _choice(s: _Section, key: str, default: Any = _DECLARED) -> str | None:
    """One of the words the key declares, or the default; a typo gets a did-you-mean."""
    choices = s.options[key].value["enum"]
    value = s.get(key, str, default)
    if value is not None and value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        raise s.error(key, f"unknown {key} '{value}'",
                      f"did you mean '{close[0]}'?" if close else "use " + ", ".join(choices))
    return value


def _dictionary(s: _Section, root: Path) -> DictionaryConfig | None:
    """A layer entry's ``sae`` or ``directions`` (at most one), its file checked here."""
    given = [kind for kind in DICTIONARY_KINDS if kind in s.data]
    if not given:
        return None
    if len(given) > 1:
        raise s.error(given[1], "a layer entry reads one dictionary", "list the layer twice, once with each")
    kind = given[0]
    host = s.get("name", str)
    if any(c in host for c in "*?["):
        raise s.error("name", f"'{host}': a dictionary reads one layer, not a pattern",
                      "name the module exactly ('galleria layers' lists them)")
    path = root / s.get(kind, str, ...)
    found = path.is_file() and path.suffix == ".safetensors" or \
        kind == "sae" and (path / "cfg.json").is_file() and (path / "sae_weights.safetensors").is_file()
    if not found:
        raise s.error(kind, f"'{s.data[kind]}' is not a .safetensors file" + (
            " or a folder holding cfg.json and sae_weights.safetensors (SAELens' format)" if kind == "sae" else ""),
            "give the path from the folder holding site.yaml")
    return DictionaryConfig(kind, path, host)


def _layout(s: _Section) -> str | None:
    return _choice(s, "layout")


def _slug(s: _Section, key: str) -> str:
    value = s.get(key, str)
    if not SLUG.match(value):
        raise s.error(key, f"'{value}' cannot be part of a url",
                      "use letters, digits, '-', '_' and '.'")
    return value


def _check_source(s: _Section, source: str, root: Path) -> None:
    if source.startswith("torchscript:"):
        if not (root / source.split(":", 1)[1]).is_file():
            raise s.error("source", f"TorchScript file '{source.split(':', 1)[1]}' not found")
        return
    if source.startswith(SOURCE_PREFIXES):
        if not source.split(":", 1)[1]:
            raise s.error("source", f"'{source}' names no model", "e.g. torchvision:resnet18")
        return
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", source):
        raise s.error("source", f"cannot read model source '{source}'",
                      "use torchvision:NAME, timm:NAME, torchscript:PATH or package.module:callable")


def _pretrained_dir(s: _Section, source: str, root: Path) -> Path | None:
    """A transformers model's folder: beside site.yaml, or inside an installed package
    (``transformers:PACKAGE/SUBFOLDER``). None when the package is absent: the build skips it."""
    if not source.startswith("transformers:"):
        return None
    location = source.split(":", 1)[1]
    if (root / location).is_dir():
        folder = root / location
    else:
        package, _, sub = location.partition("/")
        import importlib.util

        spec = importlib.util.find_spec(package) if SLUG.match(package) else None
        if spec is None or not spec.submodule_search_locations:
            if importlib.util.find_spec("transformers") is None:
                return None  # the optional extra is missing: said once by the build, not an error
            raise s.error("source", f"no folder '{location}' beside site.yaml and no installed package '{package}'",
                          "give a folder holding config.json, or PACKAGE/SUBFOLDER of an installed package")
        folder = Path(next(iter(spec.submodule_search_locations))) / sub
    if not (folder / "config.json").is_file():
        raise s.error("source", f"'{folder}' holds no config.json", "point at a saved Hugging Face model folder")
    return folder


def _tokenizer(s: _Section, source: str, root: Path) -> str | None:
    """How text becomes token ids: chars:VOCAB.json, a tokenizer.json file, or the model folder's own."""
    value = s.get("tokenizer", str)
    if value is None:
        return "model" if source.startswith("transformers:") else None
    if value == "model":
        if not source.startswith("transformers:"):
            raise s.error("tokenizer", "only a transformers model has its own tokenizer",
                          "use chars:VOCAB.json or a tokenizer.json file")
        return value
    path = value.split(":", 1)[1] if value.startswith("chars:") else value
    if not (root / path).is_file():
        raise s.error("tokenizer", f"tokenizer file '{path}' not found",
                      "use chars:VOCAB.json (a character vocabulary) or a Hugging Face tokenizer.json")
    return ("chars:" if value.startswith("chars:") else "") + str(root / path)


def _match_inputs(top: _Section, models: tuple[ModelConfig, ...], inputs: tuple[InputSetConfig, ...]) -> None:
    """Each model reads input sets of its own kind, and at least one."""
    by_id = {i.id: i for i in inputs}
    for i, model in enumerate(models):
        where = _Section(top.data["models"][i], top.file, f"models[{i}]", model.line, MODEL)
        if model.inputs is not None and not model.inputs:
            raise where.error("inputs", "must name at least one input set", "or leave it out to read every set")
        for name in model.inputs or ():
            if name not in by_id:
                close = difflib.get_close_matches(name, list(by_id), n=1)
                raise where.error("inputs", f"no input set '{name}'",
                                  f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(by_id))
            if by_id[name].kind != model.kind:
                raise where.error("inputs", f"model '{model.id}' reads {model.kind}s but input set '{name}' "
                                  f"holds {by_id[name].kind}s", "set the input's type, or the model's tokenizer")
        if not any(i.kind == model.kind for i in inputs):
            hint = "add an input set with type: text" if model.kind == "text" else "add a folder of images"
            raise where.error("source", f"model '{model.id}' reads {model.kind}s but no input set holds any", hint)


def _units(s: _Section, key: str, value: Any, default: tuple[int, ...] | None = None):
    """'all', a list of unit numbers, or ranges like '0-63, 100'."""
    if value is None:
        return default
    if value == "all":
        return None
    units: list[int] = []
    parts = value if isinstance(value, list) else str(value).split(",") if isinstance(value, (str, int)) else None
    if parts is None:
        raise s.error(key, f"expected 'all', a list or ranges like '0-63', got {_kind(value)}")
    for part in parts:
        match = re.fullmatch(RANGE, str(part))
        if not match or isinstance(part, bool):
            raise s.error(key, f"cannot read unit selection '{part}'", "use 'all', 5, [0, 3] or '0-63'")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) else lo
        if hi < lo:
            raise s.error(key, f"range '{part}' is empty")
        units.extend(range(lo, hi + 1))
    return tuple(sorted(set(units)))


def _weights(s: _Section, root: Path) -> WeightsConfig | None:
    raw = s.data.get("weights")
    if raw is None:
        return None
    if isinstance(raw, str):
        path = root / raw
        if not path.is_file():
            raise s.error("weights", f"weights file '{raw}' not found")
        return WeightsConfig(path, None, None, None, None, False)
    w = s.section("weights")
    path = w.get("path", str)
    package = w.get("package", str)
    if (path is None) == (package is None):
        raise ConfigError("give either 'path' or 'package' and 'file'", w.file, w.line, w.path)
    file = w.get("file", str, ...) if package else None
    if package is not None and not (_package_dir(w, package) / file).is_file():
        raise w.error("file", f"'{file}' not found inside package '{package}'")
    if path is not None and not (root / path).is_file():
        raise w.error("path", f"weights file '{path}' not found")
    remap_raw = w.data.get("remap")
    remap: str | tuple[tuple[str, str], ...] | None
    if remap_raw is None or isinstance(remap_raw, str):
        if remap_raw is not None and remap_raw not in REMAP_MODES:
            close = difflib.get_close_matches(remap_raw, REMAP_MODES, n=1)
            raise w.error("remap", f"unknown remap '{remap_raw}'",
                          f"did you mean '{close[0]}'?" if close else
                          "use by-position or a mapping of old prefix: new prefix")
        remap = remap_raw
    elif isinstance(remap_raw, dict) and all(isinstance(v, str) for v in remap_raw.values()):
        remap = tuple((str(k), v) for k, v in remap_raw.items())
    else:
        raise w.error("remap", "expected by-position or a mapping of old prefix: new prefix")
    return WeightsConfig(root / path if path else None, package, file, w.get("key", str), remap,
                         w.get("trust", bool))


def _preprocessing(p: _Section) -> Preprocessing:
    size = p.get("size", (int, list))
    if isinstance(size, int):
        size = [size, size]
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise p.error("size", f"expected a positive integer or [height, width], got {size!r}")
    channels = p.positive_int("channels")
    stats = {}
    for key in ("mean", "std"):
        value = p.get(key, (list, float))
        value = [value] * channels if isinstance(value, float) else value
        if len(value) != channels or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             for v in value):
            raise p.error(key, f"expected {channels} numbers, one per channel, got {value!r}")
        if key == "std" and any(v <= 0 for v in value):
            raise p.error(key, "every std must be above zero")
        stats[key] = tuple(float(v) for v in value)
    return Preprocessing((size[0], size[1]), channels, stats["mean"], stats["std"])


def _labels(s: _Section, root: Path) -> str | tuple[str, ...] | None:
    labels = s.get("labels", (str, list))
    if labels is None:
        return None
    if isinstance(labels, list):
        return tuple(str(v) for v in labels)
    if labels.startswith("torchvision:"):
        if labels != "torchvision:imagenet":
            raise s.error("labels", f"unknown label set '{labels}'", "did you mean 'torchvision:imagenet'?")
        return labels
    if not (root / labels).is_file():
        raise s.error("labels", f"labels file '{labels}' not found",
                      "give a text file with one class name per line, or torchvision:imagenet")
    return str(root / labels)


def _inputs(top: _Section, root: Path) -> tuple[InputSetConfig, ...]:
    sets = []
    seen: set[str] = set()
    for i, (data, line) in enumerate(_items(top, "inputs")):
        if isinstance(data, str):
            data = {"path": data}
        s = _Section(data, top.file, f"inputs[{i}]", line, INPUT)
        kind = s.get("type", str, "text" if any(k in s.data for k in ("python", "field", "window")) else "image")
        if kind not in INPUT_KINDS:
            raise s.error("type", f"unknown input type '{kind}'", "use image or text")
        python = s.get("python", str)
        if python is not None:
            _check_python_text(s, python, root)
        package = s.get("package", str)
        path = s.get("path", str, None if package or python else ...,
                     hint="a folder or glob relative to site.yaml, or package + path")
        base = _package_dir(s, package) if package else root
        labels = _choice(s, "labels")
        if labels is not None and kind != "image":
            raise s.error("labels", "only an image set has classes in folders", "remove it from this text set")
        # an ImageFolder's images are in its class folders
        include: tuple[str, ...] = tuple(_str_list(s, "include", ["*/*"] if labels == "folders" else _DECLARED))
        folder = base / (path or "")
        if path and any(ch in path for ch in "*?["):
            folder, pattern = _split_glob(base, path)
            include = (pattern,)
        elif kind == "text" and folder.is_file():  # one text or JSON Lines file
            folder, include = folder.parent, (folder.name,)
        if not folder.is_dir():
            raise s.error("path", f"folder '{folder}' does not exist")
        window = s.positive_int("window")
        overlap = s.get("overlap", int, min(32, window // 4))
        if not 0 <= overlap < window:
            raise s.error("overlap", f"must be at least 0 and below the window ({window}), got {overlap}")
        set_id = s.get("id", str) or (Path(path).name if path else package or python.split(":")[0]) \
            or f"inputs{i}"
        set_id = re.sub(r"[^A-Za-z0-9_.-]+", "-", set_id).strip("-") or f"inputs{i}"
        if set_id in seen:
            raise s.error("id", f"input set id '{set_id}' is used twice", "give each set an id")
        seen.add(set_id)
        c = s.section("crops")
        scales = c.get("scales", list)
        if not scales or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in scales):
            raise c.error("scales", f"expected a list of positive integers, got {scales!r}",
                          "e.g. [1, 2, 3]: the whole image, a 2x2 grid, a 3x3 grid")
        crop_overlap = c.get("overlap", float)
        if not 0 <= crop_overlap < 1:
            raise c.error("overlap", f"must be at least 0 and below 1, got {crop_overlap}")
        limit = s.get("limit", int)
        sets.append(InputSetConfig(set_id, folder, include, tuple(_str_list(s, "exclude")),
                                   CropScheme(tuple(sorted(set(scales))), crop_overlap), limit, line, kind,
                                   s.get("field", str), python, window, overlap, labels))
    return tuple(sets)


def package_dir(name: str, root: Path | None = None) -> Path | None:
    """The folder of an installed package (or, with ``root``, of one beside site.yaml); None when
    there is none or ``name`` is a plain module."""
    import importlib.util

    try:
        spec = find_spec_beside(name, root) if root is not None else importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_spec_beside(name: str, root: Path):
    """importlib's spec for a module, found as the user's code finds it (the folder holding
    site.yaml on the path) without importing it; None when there is none."""
    import importlib.util
    import sys

    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    finally:
        if added:
            sys.path.remove(str(root))


def _check_python_text(s: _Section, python: str, root: Path) -> None:
    """``module:attribute`` must name something importable (a module beside site.yaml counts);
    its value is checked when it is read."""
    module, _, attribute = python.partition(":")
    if not attribute or not re.fullmatch(r"[A-Za-z_][\w.]*", module) or not re.fullmatch(r"[A-Za-z_][\w.]*", attribute):
        raise s.error("python", f"cannot read '{python}'", "use module:attribute, e.g. pydoc_data.topics:topics")
    if find_spec_beside(module, root) is None:
        raise s.error("python", f"module '{module}' is not installed", f"pip install {module.split('.')[0]}")


def _str_list(s: _Section, key: str, default: Any = _DECLARED) -> list[str]:
    value = s.get(key, (str, list), default)
    value = [value] if isinstance(value, str) else value
    if not all(isinstance(v, str) for v in value):
        raise s.error(key, "expected a list of glob patterns")
    return value


def _split_glob(base: Path, path: str) -> tuple[Path, str]:
    parts = Path(path).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if any(c in p for c in "*?["))]]
    return base.joinpath(*fixed), str(Path(*parts[len(fixed):]))


def _package_dir(s: _Section, package: str) -> Path:
    found = package_dir(package) if SLUG.match(package) else None
    if found is None:
        raise s.error("package", f"package '{package}' is not installed", f"pip install {package}")
    return found
