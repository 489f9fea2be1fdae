"""Link-preview cards: size, what shows where, fitting long text, odd characters, keys and caching."""
from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
import pytest
from PIL import Image

from galleria.cache import Cache
from galleria.visualize import cards
from galleria.visualize.cards import BG, BG_SOFT, NEGATIVE, POSITIVE, Card, card_file, card_key, draw_card

RED = (220, 20, 20)
ODD = "猫の耳 😀👩‍💻 é̃ Ω ↵·→ ⏎ \x00\u200b\t\n عربى \ud800 ∅ −1"


def _save(path, pixels: np.ndarray, **options):
    Image.fromarray(pixels).save(path, **options)
    return path


def _solid(path, colour, size=128):
    return _save(path, np.full((size, size, 3), colour, dtype=np.uint8))


def _tiles(tmp_path, n=6):
    rng = np.random.default_rng(0)
    return tuple(_save(tmp_path / f"tile{i}.jpg", rng.integers(60, 200, (112, 112, 3), dtype=np.uint8), quality=85)
                 for i in range(n))


def _unit(tmp_path, **changes) -> Card:
    card = Card(site="galleria · default gallery", title="Unit 285", subtitle="blocks.6 · EfficientNet-Lite0",
                label="tabby cat fur", facts="max 7.91 · active 12% · top: tabby, tiger cat",
                images=(_solid(tmp_path / "fv.png", RED), *_tiles(tmp_path)), feature=True)
    return dataclasses.replace(card, **changes)


def _text(**changes) -> Card:
    lines = ((("The", 0.0), (" cat", 1.0), (" sat", 0.2), ("\n", 0.0), ("\t", 0.0), ("  ", 0.0)),
             (("import", 0.0), (" numpy", -1.0), (" as", 0.0), (" np", 0.1)))
    card = Card(site="galleria · text", title="Unit 12", subtitle="encoder.layer.3 · MiniLM", label="cats",
                facts="max 3.2", text=lines)
    return dataclasses.replace(card, **changes)


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _near(img: Image.Image, colour, tolerance: int) -> np.ndarray:
    """Which pixels are within tolerance of colour in every channel."""
    pixels = np.asarray(img.convert("RGB")).astype(int)
    return (np.abs(pixels - np.array(colour)) <= tolerance).all(axis=-1)


def _blend(colour, opacity):
    return tuple(round(c * opacity + u * (1 - opacity)) for c, u in zip(colour, BG_SOFT))


@pytest.mark.parametrize("kind", ["unit", "tiles", "feature only", "text", "plain"])
def test_every_kind_of_card_is_1200_by_630_in_the_format_its_suffix_names(tmp_path, kind):
    card = {"unit": _unit(tmp_path),
            "tiles": _unit(tmp_path, feature=False, caption="units"),
            "feature only": _unit(tmp_path, images=(_solid(tmp_path / "fv.png", RED),)),
            "text": _text(),
            "plain": Card(site="galleria", title="EfficientNet-Lite0", subtitle="ImageNet classifier")}[kind]
    path = card_file(card, Cache(tmp_path / "cache"))
    img = _open(path.read_bytes())
    assert img.size == (1200, 630)
    assert img.format == {".jpg": "JPEG", ".png": "PNG"}[path.suffix]
    assert path.suffix == (".jpg" if card.images else ".png")


def test_drawing_is_deterministic(tmp_path):
    for card in (_unit(tmp_path), _text()):
        assert draw_card(card) == draw_card(card)


def test_the_feature_visualization_fills_a_large_region_on_the_right(tmp_path):
    img = _open(draw_card(_unit(tmp_path)))
    red = _near(img, RED, 40)
    ys, xs = np.nonzero(red)
    assert red.sum() > 250 * 250  # drawn large, not as one tile among many
    assert xs.min() > 400 and xs.max() < 1200 - 40  # in the right-hand panel, inside the margin
    without = _open(draw_card(_unit(tmp_path, images=_tiles(tmp_path), feature=False)))
    assert _near(without, RED, 40).sum() == 0


def test_transparent_greyscale_and_palette_images_are_drawn_over_the_background(tmp_path):
    rgba = np.zeros((96, 96, 4), dtype=np.uint8)
    rgba[..., :3] = RED
    clear = _save(tmp_path / "clear.png", rgba)  # fully transparent: nothing red may show
    rgba[..., 3] = 255
    opaque = _save(tmp_path / "opaque.png", rgba)
    grey = _save(tmp_path / "grey.jpg", np.full((80, 120), 90, dtype=np.uint8))
    wide = _save(tmp_path / "wide.png", (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    palette = tmp_path / "palette.png"
    Image.fromarray(np.full((50, 50, 3), (0, 128, 0), dtype=np.uint8)).convert("P").save(palette)
    others = (grey, wide, palette)
    assert _near(_open(draw_card(_unit(tmp_path, images=(clear, *others)))), RED, 40).sum() == 0
    assert _near(_open(draw_card(_unit(tmp_path, images=(opaque, *others)))), RED, 40).sum() > 250 * 250


def test_text_cards_colour_tokens_like_the_site(tmp_path):
    positive, negative = _blend(POSITIVE, 0.8), _blend(NEGATIVE, 0.8)  # values ±1: the site's .t.p8, .t.n8
    up, down = _text().text
    img = _open(draw_card(_text(text=(up,))))
    assert _near(img, positive, 2).sum() > 200 and _near(img, negative, 2).sum() == 0
    img = _open(draw_card(_text(text=(down,))))
    assert _near(img, negative, 2).sum() > 200 and _near(img, positive, 2).sum() == 0
    img = _open(draw_card(_text(text=((("The", 0.0), (" cat", 0.0)),))))
    assert _near(img, positive, 2).sum() == 0 and _near(img, negative, 2).sum() == 0


def test_flat_cards_keep_the_themes_colours_exactly(tmp_path):
    img = _open(draw_card(_text())).convert("RGB")
    assert img.getpixel((1199, 629)) == BG
    assert img.getpixel((1199, 5)) == BG_SOFT  # the header strip, not merged with the white page


def test_a_long_line_of_tokens_is_clipped_and_keeps_its_strongest_token(tmp_path):
    words = [(f" word{i}", 0.0) for i in range(200)]
    words[150] = (" peak", 1.0)
    img = _open(draw_card(_text(text=(tuple(words),))))
    peak = _near(img, _blend(POSITIVE, 0.8), 2)
    assert peak.sum() > 100
    assert np.nonzero(peak)[1].max() < 1200 - 56  # inside the right margin


@pytest.mark.parametrize("images", [True, False])
def test_very_long_text_wraps_and_stays_inside_its_column(tmp_path, images):
    long = "a very long label that someone wrote in the notes describing this unit in detail " * 8
    card = _unit(tmp_path, site=long, title="Unit 12345 of a layer with a really long name " * 3, label=long,
                 subtitle="model.backbone.stages.3.blocks.17.attention.projection." * 4, facts=long + "x" * 300)
    if not images:
        card = dataclasses.replace(card, images=())
    img = _open(draw_card(card))
    ink = ~_near(img, BG, 24) & ~_near(img, BG_SOFT, 24)
    assert not ink[:, 1200 - 40:].any() and not ink[630 - 12:].any()  # nothing runs off the right or bottom
    if images:
        picture_left = np.nonzero(_near(img, RED, 40))[1].min()
        assert not ink[70:, picture_left - 36:picture_left - 4].any()  # the text stops short of the pictures


def test_odd_characters_do_not_break_a_card(tmp_path):
    for card in (_unit(tmp_path, site=ODD, title=ODD, label=ODD, subtitle=ODD, facts=ODD, caption=ODD),
                 _text(site=ODD, title=ODD, label=ODD, text=(tuple((ch, 0.5) for ch in ODD), ((ODD, float("nan")),))),
                 Card(site=ODD, title=ODD, subtitle=ODD, label=ODD, facts=ODD),
                 Card(site="", title="", subtitle="")):
        assert _open(draw_card(card)).size == (1200, 630)


@pytest.fixture
def no_system_fonts(monkeypatch):
    """As on a machine with neither DejaVu nor Liberation: Pillow's built-in font only."""
    caches = (cards._font_path, cards._font, cards._has, cards._glyph)
    for cached in caches:
        cached.cache_clear()
    for role in cards._FONTS:
        monkeypatch.setitem(cards._FONTS, role, ("galleria-no-such-font.ttf",))
    yield
    for cached in caches:
        cached.cache_clear()


def test_without_system_fonts_cards_use_pillows_font_and_stand_ins_for_missing_glyphs(tmp_path, no_system_fonts):
    assert cards._shown("mono", "a↵→·é猫") == "a\\n»·e?"  # the built-in font has ASCII, · and » only
    for card in (_unit(tmp_path, label=ODD), _text(text=(tuple((ch, 0.5) for ch in ODD),)), Card("", ODD, ODD)):
        data = draw_card(card)
        assert _open(data).size == (1200, 630) and data == draw_card(card)


def test_key_follows_every_field_and_the_image_files_only(tmp_path):
    card = _unit(tmp_path)
    key = card_key(card)
    draw_card(card)
    assert card_key(Card(**{f.name: getattr(card, f.name) for f in dataclasses.fields(card)})) == key
    for field, value in [("label", "whiskers"), ("title", "Unit 286"), ("facts", ""), ("feature", False),
                         ("caption", "units"), ("text", ((("a", 1.0),),))]:
        assert card_key(dataclasses.replace(card, **{field: value})) != key, field
    fv = card.images[0]
    mtime = os.stat(fv).st_mtime_ns
    _solid(fv, (20, 200, 20))
    os.utime(fv, ns=(mtime, mtime + 10**9))  # a new time even where the file system's clock is coarse
    assert card_key(card) != key


def test_card_file_draws_once_then_reuses_the_cached_file(tmp_path):
    cache = Cache(tmp_path / "cache")
    card = _unit(tmp_path)
    path = card_file(card, cache)
    assert path.is_file() and path.parent.parent == tmp_path / "cache" / "cards"
    os.utime(path, ns=(10**18, 10**18))  # any rewrite would give it the present time
    assert card_file(card, cache) == path
    assert path.stat().st_mtime_ns == 10**18
    other = card_file(dataclasses.replace(card, label="whiskers"), cache)
    assert other != path and other.is_file()
    assert card_file(_text(), cache).suffix == ".png"
