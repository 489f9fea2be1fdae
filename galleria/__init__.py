"""galleria: a static site generator for neural-network activation galleries.

The command line's work, for scripts and notebooks:

    import galleria
    report = galleria.build("site.yaml")            # what `galleria build` does; returns its report
    site = galleria.open("site")                    # a built site's records, for analysis
    for record in site.units("efficientnet-lite0", "blocks.4"):
        print(record["unit"], record["stats"]["max"], record["label"])

and the same pipeline on a model and inputs already in memory, shown inline in a notebook:

    gallery = galleria.Gallery(model, images, ["layer3", "fc"], labels="torchvision:imagenet")
    gallery.unit("layer3", 7)                       # the unit's page, inline
    gallery.probe(image)                            # the units that respond most to one input
    gallery.save("site")                            # the whole site
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["build", "open", "export", "Gallery"]


def build(config: str = "site.yaml", output_dir: str | None = None, *, clean: bool = False, strict: bool = False,
          quiet: bool = True, site_url: str | None = None):
    """Build the gallery ``config`` describes, as ``galleria build`` does; returns its BuildReport
    (counts, sizes, each stage's seconds, warnings). Bad input raises a GalleriaError with the
    command's one-line message."""
    from galleria.commands.build import build as run

    return run(config, output_dir, clean=clean, strict=strict, quiet=quiet, site_url=site_url)


def open(site: str = "site"):  # shadows the built-in inside this module only, as `galleria.open`
    """A built site's records (galleria.built.BuiltSite): its models, their layers, and every unit's
    record, as its unit.json holds it."""
    from galleria.built import BuiltSite

    return BuiltSite(site)


def export(config: str = "site.yaml", format: str = "jsonl", output: str | None = None, *,
           build_first: bool = True, quiet: bool = True):
    """Every unit's record, one file per layer, as ``galleria export`` writes them; returns the folder."""
    from galleria.commands.export import export as run

    return run(config, format, output, build_first=build_first, quiet=quiet)


def __getattr__(name: str):
    """galleria.Gallery, imported when first asked for: ``import galleria`` stays light."""
    if name == "Gallery":
        from galleria.gallery import Gallery

        return Gallery
    raise AttributeError(f"module 'galleria' has no attribute '{name}'")
