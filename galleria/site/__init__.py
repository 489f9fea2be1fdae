"""Presentation layer: the Jinja theme (templates, assets) that turns built records into static pages."""
