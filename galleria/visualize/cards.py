"""Link-preview cards: the 1200 x 630 image a chat or social site shows for a shared page.

Previews are shown about 500 pixels wide, so everything is drawn big and few things are drawn:
the title, the label, a line or two of facts, and the unit's pictures or coloured text. A site
has thousands of cards, so they are cached by content and drawn with fonts loaded once per size.

Fonts: DejaVu (or Liberation) from the system when installed, else Pillow's built-in Aileron,
which covers only ASCII and a few marks; the fonts found are part of the cache key. A character
the font lacks is drawn as a look-alike it has (↵ as ¶ or \\n, → as », é as e) or as "?" (DejaVu
has no Chinese or Japanese, and no emoji in its monospace face), never as an empty box.
"""
from __future__ import annotations

import functools
import io
import math
import os
import unicodedata
from dataclasses import dataclass, fields
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from galleria.cache import Cache, content_key
from galleria.records import Heat
from galleria.visualize.tiles import draw_tile
from galleria.visualize.tokens import LEVELS, visible

FORMAT = 2  # bump when the drawing changes: cached cards are keyed on it
WIDTH, HEIGHT = 1200, 630

# The light scheme of themes/default/assets/galleria.css.
BG = (255, 255, 255)
BG_SOFT = (245, 246, 248)
FG = (28, 31, 36)
FG_SOFT = (74, 81, 92)
MUTED = (107, 114, 128)
BORDER = (221, 225, 231)
ACCENT = (47, 95, 208)
POSITIVE = (232, 89, 12)  # .t.p1 … .t.p8: this colour at opacity 0.1 … 0.8
NEGATIVE = (30, 100, 220)

_MARGIN = 56
_HEADER = 64  # height of the strip holding the site name, like the site's own header
_GAP = 44  # between the text column and the pictures
_PANEL_WIDTH = 600  # pictures on the right: the text column gets the rest
_CAPTION = 30  # room under a picture for its caption
_BELOW = 25  # from the bottom of a picture to its caption's baseline
_TILE_GAP = 9
_MAX_GRID = 12  # pictures beyond this many are left out: they would be too small to see
_BLOCKY = 4  # pictures enlarged this many times or more show their pixels, as tiles.py does
_TEXT_LINES = 4
_PNG_COLOURS = 128  # flat cards: their fills, and enough shades between them for smooth text edges

_FONTS = {  # tried in order; None is Pillow's built-in font
    "sans": ("DejaVuSans.ttf", "LiberationSans-Regular.ttf"),
    "bold": ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf"),
    "mono": ("DejaVuSansMono.ttf", "LiberationMono-Regular.ttf"),
}
_ALTERNATES = {  # look-alikes for characters a font may lack, best first
    "↵": ("⏎", "¶", "\\n"),
    "→": ("⇥", "»", "->"),
    "·": ("•", "."),
    "…": ("...",),
    "∅": ("Ø", "(empty)"),
    "“": ('"',), "”": ('"',), "‘": ("'",), "’": ("'",),
    "−": ("-",), "–": ("-",), "—": ("-",), "×": ("x",),
}
_ELLIPSIS = "…"

# JPEG quantization: the IJG's example tables (JPEG standard, annex K), luminance at quality 70
# and chrominance at 50, with luminance frequencies past the third diagonal quantized ever more
# coarsely. A preview shows the card at about 40 % of its size, which keeps only the lower
# frequencies; with no visible change there, picture cards come out 23-31 % smaller than at
# quality 70 (a unit card 43 KB rather than 59).
_IJG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
             14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_IJG_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
               47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32


def _qtable(base: tuple[int, ...], quality: int, steeper: float) -> list[int]:
    """base scaled for quality as libjpeg does, then coarser by ``steeper`` per diagonal past the third
    (natural order, as Pillow takes it)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return [max(1, min(255, round(q * scale / 100 * (1 + steeper * max(0, i // 8 + i % 8 - 2)))))
            for i, q in enumerate(base)]


# optimize: Huffman tables fitted to the card, 8 % smaller for 1.7 ms; progressive would save 4 %
# more for another 3 ms, a minute of CPU time on a large site.
_JPEG = {"qtables": [_qtable(_IJG_LUMA, 70, 0.8), _qtable(_IJG_CHROMA, 50, 0.0)], "optimize": True}


@dataclass(frozen=True)
class CardTile:
    """An example as a card shows it: a window onto a stored source image, with the unit's heat."""

    source: Path  # the stored (cached) source image
    window: tuple[float, float, float, float]  # (left, top, right, bottom) in its pixels
    heat: Heat | None
    mark: tuple[float, float, float, float] | None  # outlined, in fractions of the window


@dataclass(frozen=True)
class Card:
    site: str  # site title, small, top left
    title: str  # big: "Unit 285", "blocks.6", "EfficientNet-Lite0"
    subtitle: str  # the path to the page: "blocks.6 · EfficientNet-Lite0"
    label: str = ""  # the unit's label from notes, or its class name
    facts: str = ""  # one line: "max 7.91 · active 12% · top: tabby, tiger cat"
    images: tuple[Path | CardTile, ...] = ()  # a unit's feature visualization (see feature) then its top examples
    feature: bool = False  # images[0] is a feature visualization: drawn large and captioned so
    text: tuple[tuple[tuple[str, float], ...], ...] = ()  # without images: example lines of (token piece, value in [-1, 1])
    caption: str = "top examples"  # what the grid of images or the text lines are (a layer's: "units"), or ""


def card_key(card: Card) -> str:
    """Every field, each image by name, size and time (cached images are named by their content),
    and the fonts, which change the drawing when another is installed."""
    parts = [(f.name, getattr(card, f.name)) for f in fields(card) if f.name != "images"]
    images = [(Path(p).name, st.st_size, st.st_mtime_ns) if isinstance(p, Path) else
              (p.source.name, st.st_size, st.st_mtime_ns, p.window, p.heat, p.mark)
              for p in card.images for st in [os.stat(p if isinstance(p, Path) else p.source)]]
    return content_key(FORMAT, [_font_path(role) for role in _FONTS], parts, images)


def card_file(card: Card, cache: Cache) -> Path:
    """The card's cached file, drawn first if it is not there; .jpg with pictures, .png without."""
    key = card_key(card)
    path = cache.file("cards", key, _suffix(card))
    if path.is_file():
        return path
    return cache.put_file("cards", key, _suffix(card), draw_card(card))


def draw_card(card: Card) -> bytes:
    """The card as JPEG when it shows pictures, else as PNG, whichever is smaller. Measured on
    cards like the site's: a text card is 26 KB as 128-colour PNG (and sharp), 43 KB as JPEG; a
    unit card is 43 KB as JPEG, 86 KB as 128-colour PNG (and banded), 320 KB as full-colour PNG."""
    img = _render(card)
    buffer = io.BytesIO()
    if _suffix(card) == ".jpg":
        img.save(buffer, format="jpeg", **_JPEG)
    else:
        _flat(img).save(buffer, format="png")  # optimize=True: 3x the time for 8 % less
    return buffer.getvalue()


def _suffix(card: Card) -> str:
    return ".jpg" if card.images else ".png"


def _flat(img: Image.Image) -> Image.Image:
    """img with only its most frequent colours: every flat fill exactly, text edges nearly so.

    Pillow's quantizers average colours into buckets, turning the white page grey and merging it
    with the header's grey; mapping to a given palette looks colours up by their top 6 bits. So
    the palette holds one colour per 6-bit cell, written as the cell's corner for the lookup (an
    exact hit for each of them) and then replaced by the colour itself.
    """
    sample = img.resize((WIDTH // 2, HEIGHT // 2), Image.Resampling.NEAREST)  # a quarter of the pixels: 4x faster
    cells: dict[tuple[int, ...], tuple[int, ...]] = {}
    for _, colour in sorted(sample.getcolors(WIDTH * HEIGHT), reverse=True):
        cells.setdefault(tuple(channel >> 2 << 2 for channel in colour), colour)
        if len(cells) == _PNG_COLOURS:
            break
    palette = Image.new("P", (1, 1))
    palette.putpalette([channel for corner in cells for channel in corner])
    flat = img.quantize(palette=palette, dither=Image.Dither.NONE)
    flat.putpalette([channel for colour in cells.values() for channel in colour])
    return flat


def _render(card: Card) -> Image.Image:
    img = Image.new("RGB", (WIDTH, HEIGHT), BG)
    draw = ImageDraw.Draw(img)
    _header(draw, card.site)
    if card.images:
        _picture_card(img, draw, card, tuple(card.images))
    elif card.text:
        _text_card(draw, card)
    else:
        _plain_card(draw, card)
    return img


# ---------------------------------------------------------------- the three layouts


def _picture_card(img: Image.Image, draw: ImageDraw.ImageDraw, card: Card, images: tuple[Path, ...]) -> None:
    """Text on the left, pictures on the right; the two start and end at the same heights."""
    layout = _arrange(len(images), card.feature)
    width, height = layout[-2:]
    band = max(height + _CAPTION, 380)  # room for title, label and subtitle beside a short grid
    top = _HEADER + (HEIGHT - _HEADER - band) // 2
    left = WIDTH - _MARGIN - width
    _pictures(img, draw, images, card.feature, card.caption, layout, left, top + (band - height - _CAPTION) // 2)
    column = left - _GAP - _MARGIN
    bottom = _facts(draw, card.facts, _MARGIN, column, top + band - _CAPTION + _BELOW, 2) - 16
    _stack(draw, _headings(card, big=False), _MARGIN, top, column, bottom)


def _text_card(draw: ImageDraw.ImageDraw, card: Card) -> None:
    """Headings above, the examples' coloured text across the whole width below."""
    width = WIDTH - 2 * _MARGIN
    _facts(draw, card.facts, _MARGIN, width, HEIGHT - 26, 1)
    top = _token_lines(draw, card.text[:_TEXT_LINES], card.caption, HEIGHT - 64)
    _stack(draw, _headings(card, big=False), _MARGIN, _HEADER + 36, width, top - 16)


def _plain_card(draw: ImageDraw.ImageDraw, card: Card) -> None:
    """Nothing to show but words: larger type, the block centred, an accent bar beside it."""
    left, width = _MARGIN + 32, WIDTH - 2 * _MARGIN - 32
    items = _headings(card, big=True) + [(card.facts, "sans", (30,), MUTED, 2, 30)]
    height = _stack(None, items, left, 0, width, HEIGHT)
    top = max(_HEADER + 40, _HEADER + (HEIGHT - _HEADER - height) // 2)
    bottom = _stack(draw, items, left, top, width, HEIGHT - 40)
    draw.rectangle((_MARGIN, top, _MARGIN + 7, bottom), fill=ACCENT)


def _headings(card: Card, big: bool) -> list:
    """Title, label and subtitle as _stack items: (text, font role, sizes, colour, most lines, space above)."""
    label = f"“{_one_line(card.label)}”" if card.label.strip() else ""
    return [(card.title, "bold", (96, 80, 64) if big else (72, 60, 50), FG, 2, 0),
            (label, "sans", (48, 40) if big else (40, 34), ACCENT, 2, 18),
            (card.subtitle, "sans", (30,) if big else (26,), FG_SOFT, 2, 16)]


def _header(draw: ImageDraw.ImageDraw, site: str) -> None:
    """The site's name in a grey strip, as the site's own pages start."""
    draw.rectangle((0, 0, WIDTH, _HEADER - 1), fill=BG_SOFT)
    draw.line((0, _HEADER - 1, WIDTH, _HEADER - 1), fill=BORDER, width=1)
    font = _font("bold", 26)
    line = _clip(_shown("bold", _one_line(site)), font, "bold", WIDTH - 2 * _MARGIN)
    draw.text((_MARGIN, _HEADER // 2), line, font=font, fill=FG_SOFT, anchor="lm")


# ---------------------------------------------------------------- text blocks


def _stack(draw: ImageDraw.ImageDraw | None, items, left: int, top: int, width: int, bottom: int) -> int:
    """Blocks of text one under another from top, the first's capitals touching it; each at the
    largest of its sizes on which it fits one line, else wrapped at the smallest into at most its
    number of lines, and none below bottom. Returns the y under the last; draw None only measures."""
    y = top
    for text, role, sizes, colour, most, space in items:
        text = _shown(role, _one_line(text))
        if not text:
            continue
        for size in sizes:
            font = _font(role, size)
            if font.getlength(text) <= width:
                break
        step, below = _line_height(size), round(size * 0.3)
        first = y + space + _cap(font)
        fit = min(most, (bottom - below - first) // step + 1)
        if fit < 1:
            break
        lines = _wrap(text, font, role, width, fit)
        if draw is not None:
            for i, line in enumerate(lines):
                draw.text((left, first + i * step), line, font=font, fill=colour, anchor="ls")
        y = first + (len(lines) - 1) * step + below
    return y


def _facts(draw: ImageDraw.ImageDraw, facts: str, left: int, width: int, baseline: int, most: int) -> int:
    """The facts in at most ``most`` lines, the last on baseline; returns the top of the first."""
    text = _shown("sans", _one_line(facts))
    if not text:
        return baseline
    font = _font("sans", 28)
    lines = _wrap(text, font, "sans", width, most)
    step = _line_height(28)
    first = baseline - step * (len(lines) - 1)
    for i, line in enumerate(lines):
        draw.text((left, first + i * step), line, font=font, fill=MUTED, anchor="ls")
    return first - _cap(font)


# ---------------------------------------------------------------- pictures


def _arrange(n: int, feature: bool) -> tuple[int, int, int, int, int, int]:
    """Where n pictures go in the panel: (feature size, tile columns, rows, tile size, width, height)."""
    width, height = _PANEL_WIDTH, HEIGHT - _HEADER - 72 - _CAPTION
    tiles = min(n - feature, 6 if feature else _MAX_GRID)
    if feature and tiles:
        # the feature visualization as tall as three rows of tiles, two columns of tiles beside it:
        # big + 20 + 2 * tile + gap = width with 3 * tile + 2 * gap = big
        big = (3 * (width - 20) + _TILE_GAP) // 5
        cols, rows, size = _grid(tiles, width - big - 20, big)
        return big, cols, rows, size, big + 20 + cols * size + (cols - 1) * _TILE_GAP, big
    if feature:
        big = min(width, height)
        return big, 0, 0, 0, big, big
    cols, rows, size = _grid(tiles, width, height)
    return 0, cols, rows, size, cols * size + (cols - 1) * _TILE_GAP, rows * size + (rows - 1) * _TILE_GAP


def _grid(n: int, width: int, height: int) -> tuple[int, int, int]:
    """Columns, rows and size of the largest square tiles of which n fit in width x height."""
    best = (1, n, 0)
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        size = min((width - (cols - 1) * _TILE_GAP) // cols, (height - (rows - 1) * _TILE_GAP) // rows)
        if size > best[2]:
            best = (cols, rows, size)
    return best


def _pictures(img: Image.Image, draw: ImageDraw.ImageDraw, paths: tuple[Path, ...], feature: bool, caption: str,
              layout: tuple[int, ...], x: int, y: int) -> None:
    big, cols, rows, size = layout[:4]
    if big:
        _paste(img, paths[0], x, y, big, radius=10)
        _caption(draw, "feature visualization", x, y + big)
        x += big + 20
    tiles = paths[1:] if feature else paths
    for i, path in enumerate(tiles[:cols * rows]):
        row, col = divmod(i, cols)
        _paste(img, path, x + col * (size + _TILE_GAP), y + row * (size + _TILE_GAP), size, radius=6)
    if cols and caption:
        _caption(draw, caption, x, y + rows * size + (rows - 1) * _TILE_GAP)


def _caption(draw: ImageDraw.ImageDraw, text: str, x: int, y: int) -> None:
    """A small caption with its baseline under y, the bottom of what it describes."""
    draw.text((x, y + _BELOW), _shown("sans", text), font=_font("sans", 22), fill=MUTED, anchor="ls")


def _paste(img: Image.Image, path: Path | CardTile, x: int, y: int, size: int, radius: int) -> None:
    """An image file of any mode and size, centre-cropped to a size x size square with rounded
    corners, or an example's window drawn at that size."""
    if isinstance(path, CardTile):
        with Image.open(path.source) as source:
            img.paste(draw_tile(source, path.window, path.heat, path.mark, size), (x, y), _rounded(size, radius))
        return
    with Image.open(path) as source:
        source.draft(None, (size, size))  # JPEG decodes straight at a fraction of its size when large
        source.load()
        picture = _rgb(source)
    zoom = size / min(picture.size)
    resample = (Image.Resampling.NEAREST if zoom >= _BLOCKY else
                Image.Resampling.BICUBIC if zoom > 1 else Image.Resampling.BILINEAR)
    picture = ImageOps.fit(picture, (size, size), resample)
    img.paste(picture, (x, y), _rounded(size, radius))


def _rgb(picture: Image.Image) -> Image.Image:
    """Any mode as RGB, transparency laid over the card's background."""
    if picture.mode == "RGB":
        return picture
    if picture.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, BG + (255,)), rgba).convert("RGB")
    if picture.mode.startswith(("I", "F")):  # wide greyscale: stretched to 8 bits, not clipped
        picture = picture.convert("F")
        low, high = picture.getextrema()
        picture = picture.point(lambda v: (v - low) * (255 / max(high - low, 1e-9))).convert("L")
    return picture.convert("RGB")


@functools.lru_cache(maxsize=16)
def _rounded(size: int, radius: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, size - 1, size - 1), radius, fill=255)
    return mask


# ---------------------------------------------------------------- coloured text


def _token_lines(draw: ImageDraw.ImageDraw, lines, caption: str, bottom: int) -> int:
    """Example text as the site shows it, one example a line, in a box ending at bottom, under its
    caption; returns the caption's top."""
    font = _font("mono", 26)
    ascent, descent = font.getmetrics()
    row, step, pad = ascent + descent + 6, ascent + descent + 12, 14
    top = bottom - 2 * pad - (len(lines) - 1) * step - row
    left, right = _MARGIN, WIDTH - _MARGIN
    draw.rounded_rectangle((left, top, right, bottom), 8, fill=BG_SOFT, outline=BORDER)
    if caption:
        _caption(draw, caption, left, top - 35)
    for i, tokens in enumerate(lines):
        y = top + pad + i * step
        x = float(left + pad)
        runs: list[list] = []  # [x, text, ink]: one draw call per stretch of one ink, 3x faster than per token
        for piece, value, kind, width in _fit_line(tokens, font, right - left - 2 * pad):
            level = _level(value)
            if level:
                fill = _blend(POSITIVE if level > 0 else NEGATIVE, abs(level) / LEVELS * 0.8, BG_SOFT)
                draw.rectangle((round(x), y, round(x + width) - 1, y + row - 1), fill=fill)
            ink = BG if abs(level) >= LEVELS - 1 else FG if kind == "word" else MUTED  # as .t.p7 and .t.ws
            if runs and runs[-1][2] == ink:
                runs[-1][1] += piece
            else:
                runs.append([x, piece, ink])
            x += width
        for x0, text, ink in runs:
            draw.text((x0, y + 3 + ascent), text, font=font, fill=ink, anchor="ls")
    return top - 35 - _cap(_font("sans", 22)) + _BELOW


def _fit_line(tokens, font, width: float) -> list[tuple[str, float, str, float]]:
    """The tokens as (shown text, value, kind, width) that fit width; a line too long keeps its
    strongest token in view, with … where tokens were left out. kind: "word", "space" (drawn
    whitespace) or "cut"."""
    shown = []
    for piece, value in tokens:
        text = _shown("mono", visible(piece).replace("\n", ""))
        if text:
            kind = "word" if piece.strip() else "space"
            shown.append((text, float(value) if math.isfinite(value) else 0.0, kind, font.getlength(text)))
    if sum(token[3] for token in shown) <= width:
        return shown
    cut_text = _shown("mono", _ELLIPSIS)
    cut = (cut_text, 0.0, "cut", font.getlength(cut_text))
    strongest = max(range(len(shown)), key=lambda i: abs(shown[i][1]))
    start, span = strongest, shown[strongest][3]
    while start > 0 and span + shown[start - 1][3] + cut[3] <= width * 0.6:
        start -= 1
        span += shown[start][3]
    out = [cut] if start > 0 else []
    room = width - (cut[3] if start > 0 else 0)
    for i in range(start, len(shown)):
        if shown[i][3] + (cut[3] if i < len(shown) - 1 else 0) > room:
            if i == start:  # one token wider than the line: as much of it as fits
                text = _clip(shown[i][0], font, "mono", room, cut=True)
                out.append((text, shown[i][1], shown[i][2], font.getlength(text)))
            else:
                out.append(cut)
            break
        out.append(shown[i])
        room -= shown[i][3]
    return out


def _level(value: float) -> int:
    """The site's colour step (-8 … 8) for a value scaled to [-1, 1]."""
    return max(-LEVELS, min(LEVELS, round(value * LEVELS)))


def _blend(colour, opacity: float, under) -> tuple[int, ...]:
    return tuple(round(c * opacity + u * (1 - opacity)) for c, u in zip(colour, under))


# ---------------------------------------------------------------- text and fonts


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _line_height(size: int) -> int:
    return round(size * 1.22)


def _cap(font) -> int:
    """Height of a capital above the baseline: text blocks are placed by where their ink starts."""
    return -font.getbbox("H", anchor="ls")[1]


def _wrap(text: str, font, role: str, width: float, most: int) -> list[str]:
    """text in lines no wider than width, broken after a space or one of . / _ - (module paths have
    no spaces), inside a word only if nothing else fits; line ``most`` ends in … if text goes on."""
    lines = []
    while len(lines) < most - 1 and font.getlength(text) > width:
        fit = _longest_prefix(text, font, width)
        soft = max(text.rfind(" ", 0, fit + 1), *(text.rfind(c, 0, fit) for c in "./_-"))
        end = soft + 1 if soft > 0 else fit
        lines.append(text[:end].rstrip())
        text = text[end:].lstrip()
    lines.append(_clip(text, font, role, width))
    return lines


def _clip(text: str, font, role: str, width: float, cut: bool = False) -> str:
    """text, or as much of it as fits width followed by …; cut: always end in … (text continues)."""
    if not cut and font.getlength(text) <= width:
        return text
    ellipsis = _shown(role, _ELLIPSIS)
    keep = _longest_prefix(text, font, width - font.getlength(ellipsis))
    return text[:keep].rstrip() + ellipsis


def _longest_prefix(text: str, font, width: float) -> int:
    """How many leading characters of text fit width (at least one, so that text always shrinks)."""
    low, high = 1, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if font.getlength(text[:mid]) <= width:
            low = mid
        else:
            high = mid - 1
    return low


def _shown(role: str, text: str) -> str:
    return "".join(_glyph(role, ch) for ch in text)


@functools.lru_cache(maxsize=4096)
def _glyph(role: str, ch: str) -> str:
    """ch as the role's font can draw it: itself, a look-alike, its letters without accents, or "?";
    invisible format characters (joiners, marks the font lacks) are dropped."""
    if _has(role, ch):
        return ch
    if unicodedata.category(ch) in ("Cc", "Cf", "Mn", "Me"):
        return ""
    plain = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    for alternate in _ALTERNATES.get(ch, ()) + (plain,):
        if alternate and alternate != ch and all(_has(role, c) for c in alternate):
            return alternate
    return "?"


@functools.lru_cache(maxsize=4096)
def _has(role: str, ch: str) -> bool:
    """Whether the font has a glyph for ch: a missing one draws as the font's "no glyph" shape
    (unless that shape is blank, when a missing glyph draws nothing and may as well count)."""
    font = _font(role, 24)
    ink = _ink(font, ch)
    return ink != _ink(font, "\U0010fffd") or not any(ink[1])  # a private-use code point no font maps


def _ink(font, text: str) -> tuple:
    mask = font.getmask(text)
    return mask.size, bytes(mask)


@functools.cache
def _font_path(role: str) -> str | None:
    """The first of the role's fonts installed here (Pillow searches the system's font folders), or
    None for Pillow's built-in one."""
    for name in _FONTS[role]:
        try:
            return ImageFont.truetype(name, 10).path
        except OSError:
            continue
    return None


@functools.cache
def _font(role: str, size: int):
    """A font, loaded once per size: loading one costs about as much as drawing a card's text.
    Basic layout: faster than Raqm, and the same on machines with and without it."""
    path = _font_path(role)
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)
