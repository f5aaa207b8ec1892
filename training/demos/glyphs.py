"""Real font glyphs for the fonts, pix2pix and handwriting demos: faces, pictures and pen paths.

A *face* is one font file entry of ``fc-list`` (a file, or one face of a
collection). :func:`load_faces` renders the 36 glyphs A-Z, 0-9 of every
installed Latin face as a (36, size, size) grey sheet with Pillow (each glyph
centred, one scale per face so that its largest glyph just fits), drops the
faces that are not real Latin alphabets (a glyph missing, blank or drawn as the
"tofu" box, or several glyphs alike: symbol fonts) and the faces that look like
another one already kept (optical sizes of Latin Modern, a font shipped in two
packages ...), and caches the result as an ``.npz`` so the next run starts at
once. :func:`split_faces` splits faces (never glyphs) into train and held-out.

:func:`glyph_outlines` reads the same faces' outlines with fontTools and turns
them into pen trajectories: contours flattened and resampled at an even pen
step, in units of the face's cap height (y up). :func:`pen_offsets` writes a
line of such glyphs as rows ``(dx, dy, pen_up)``: ``pen_up`` 1 marks a move
made with the pen lifted (to the start of a new contour).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gogame.atomic import write_atomically
from training.demos.common import DemoDataMissing
from training.demos.datasets import holdout_split

CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
INSTALL = ("apt-get install -y --no-install-recommends fontconfig "
           "$(cat shared/demo-data/font-packages.txt)")
# The faces a --quick run uses: those of these (small) Debian packages.
QUICK_PACKAGES = ("fonts-dejavu-core", "fonts-liberation", "fonts-freefont-otf")
QUICK_FOLDERS = ("/dejavu/", "/liberation/", "/freefont/")
QUICK_MAX_FACES = 24
RENDER_PX = 64  # Pillow draws at this font size, then the sheet is scaled down
MIN_DISTINCT_GLYPHS = 34  # O/0 and I/1 may legitimately coincide; more alike is a symbol font
DUPLICATE_RMS = 0.12  # faces closer than this (RMS pixel difference) count as one: clones, adjacent weights
CACHE_VERSION = 1  # bump when rendering changes, so old caches are not reused


@dataclass(frozen=True)
class FontFace:
    """One face as ``fc-list`` names it: the file, the face index inside it, and a readable name."""

    path: str
    index: int
    name: str


@dataclass
class FaceSet:
    """Rendered faces: ``sheets`` (F, 36, size, size) float32 in [0, 1], ink 1, in :data:`CHARS` order."""

    faces: list[FontFace]
    sheets: np.ndarray

    def __len__(self) -> int:
        return len(self.faces)

    def subset(self, rows: np.ndarray) -> FaceSet:
        return FaceSet([self.faces[i] for i in rows], self.sheets[rows])


def installed_faces() -> list[FontFace]:
    """Every scalable face ``fc-list`` knows, sorted by file and index (named instances of variable fonts skipped).

    Raises DemoDataMissing when fontconfig is absent.
    """
    try:
        listing = subprocess.run(
            ["fc-list", "--format", "%{file}\t%{index}\t%{family[0]}\t%{style[0]}\n", ":scalable=true"],
            capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DemoDataMissing("fontconfig (fc-list) and the demo fonts", INSTALL) from exc
    faces = set()
    for line in listing.splitlines():
        path, index, family, style = (line.split("\t") + ["", "", ""])[:4]
        if index.isdigit() and int(index) < 1 << 16:  # 65536 and up: named instances of a variable font
            faces.add(FontFace(path, int(index), f"{family} {style}".strip()))
    return sorted(faces, key=lambda f: (f.path, f.index))


def quick_faces(faces: list[FontFace]) -> list[FontFace]:
    """The faces of :data:`QUICK_PACKAGES` among ``faces``, at most :data:`QUICK_MAX_FACES`."""
    return [f for f in faces if any(folder in f.path for folder in QUICK_FOLDERS)][:QUICK_MAX_FACES]


def _glyph_crops(face: FontFace) -> list[np.ndarray] | None:
    """The ink of each glyph of :data:`CHARS`, cropped to its box; None for a face that is no Latin alphabet."""
    try:
        font = ImageFont.truetype(face.path, RENDER_PX, index=face.index)
    except OSError:
        return None

    def ink(text: str) -> np.ndarray:
        left, top, right, bottom = font.getbbox(text)
        if right <= left or bottom <= top:
            return np.zeros((0, 0), np.uint8)
        canvas = Image.new("L", (right - left, bottom - top))
        ImageDraw.Draw(canvas).text((-left, -top), text, font=font, fill=255)
        return np.asarray(canvas)

    tofu = ink("\uffff")  # a non-character: every font draws its missing-glyph box (or nothing) for it
    crops = []
    for char in CHARS:
        crop = ink(char)
        rows, cols = np.nonzero(crop > 32)
        if rows.size < 8 or (crop.shape == tofu.shape and np.array_equal(crop, tofu)):
            return None
        crops.append(crop[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
    distinct = {(c.shape, c.tobytes()) for c in crops}
    return crops if len(distinct) >= MIN_DISTINCT_GLYPHS else None


def render_face(face: FontFace, size: int = 32, margin: int = 2) -> np.ndarray | None:
    """The (36, size, size) float32 sheet of ``face`` (ink 1), or None if it is no Latin alphabet.

    One scale for the whole face (its largest glyph fills ``size - 2 * margin``
    pixels), so an I stays narrower than a W; each glyph is centred.
    """
    crops = _glyph_crops(face)
    if crops is None:
        return None
    scale = (size - 2 * margin) / max(max(c.shape) for c in crops)
    sheet = np.zeros((len(CHARS), size, size), np.float32)
    for k, crop in enumerate(crops):
        h, w = (max(1, round(n * scale)) for n in crop.shape)
        small = np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.LANCZOS), np.float32) / 255.0
        top, left = (size - h) // 2, (size - w) // 2
        sheet[k, top:top + h, left:left + w] = small
    return sheet


def distinct_faces(sheets: np.ndarray, threshold: float = DUPLICATE_RMS) -> np.ndarray:
    """Indices of the faces to keep: each kept face differs from every earlier kept one by > ``threshold`` RMS."""
    flat = sheets.reshape(len(sheets), -1).astype(np.float64)
    sq = (flat ** 2).sum(1)
    dist2 = (sq[:, None] + sq[None, :] - 2 * flat @ flat.T) / flat.shape[1]  # mean squared difference
    keep: list[int] = []
    for i in range(len(sheets)):
        if all(dist2[i, j] > threshold ** 2 for j in keep):
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gogame"


def _cache_key(faces: list[FontFace], size: int) -> str:
    """A digest of the face list, the files' sizes and dates, and the rendering settings."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} {size} {DUPLICATE_RMS} {MIN_DISTINCT_GLYPHS}".encode())
    for face in faces:
        stat = os.stat(face.path)
        digest.update(f"{face.path}\0{face.index}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_faces(quick: bool = False, size: int = 32, cache_dir: Path | None = None) -> FaceSet:
    """The distinct Latin faces installed here (the few :data:`QUICK_PACKAGES` faces if ``quick``), rendered.

    The first call renders (about a minute for a thousand faces) and caches the
    sheets in ``cache_dir`` (default ``~/.cache/gogame``); later calls with the
    same fonts installed read the cache. Raises DemoDataMissing when fewer
    than 8 usable faces are installed.
    """
    faces = installed_faces()
    if quick:
        faces = quick_faces(faces)
    name = f"glyphs-{'quick-' if quick else ''}{size}px-{_cache_key(faces, size)}.npz"
    cache = (cache_dir or default_cache_dir()) / name
    if cache.is_file():
        with np.load(cache) as saved:
            rows = saved["rows"]
            return FaceSet([faces[i] for i in rows], saved["sheets"].astype(np.float32) / 255.0)
    rendered = [(i, render_face(face, size)) for i, face in enumerate(faces)]
    rendered = [(i, sheet) for i, sheet in rendered if sheet is not None]
    if len(rendered) < 8:
        raise DemoDataMissing(f"fonts (found {len(rendered)} usable Latin faces, need 8)",
                              INSTALL if not quick else "apt-get install -y fontconfig " + " ".join(QUICK_PACKAGES))
    sheets = np.stack([sheet for _, sheet in rendered])
    keep = distinct_faces(sheets)
    rows = np.asarray([rendered[k][0] for k in keep], dtype=np.int64)
    sheets = sheets[keep]
    as_bytes = np.round(sheets * 255).astype(np.uint8)
    write_atomically(cache, lambda f: np.savez_compressed(f, rows=rows, sheets=as_bytes))
    return FaceSet([faces[i] for i in rows], as_bytes.astype(np.float32) / 255.0)


def split_faces(n_faces: int, held_out_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) face indices: a seeded split of whole faces, never of glyphs."""
    return holdout_split(n_faces, held_out_fraction, seed)


# -- outlines as pen trajectories ---------------------------------------------


def _bezier(control: np.ndarray, n: int) -> np.ndarray:
    """``n`` points (n, 2) of the Bézier curve with ``control`` points (k, 2), t in (0, 1] (the start omitted)."""
    t = np.linspace(0.0, 1.0, n + 1)[1:, None, None]  # (n, 1, 1)
    points = np.broadcast_to(control, (n, *control.shape))  # (n, k, 2)
    while points.shape[1] > 1:  # de Casteljau
        points = points[:, :-1] * (1 - t) + points[:, 1:] * t
    return points[:, 0]


def _resample(contour: np.ndarray, step: float) -> np.ndarray:
    """A closed polyline (k, 2) resampled at about ``step`` arc-length spacing, start point first, not repeated."""
    closed = np.vstack([contour, contour[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(3, int(round(arc[-1] / step)))
    at = np.linspace(0.0, arc[-1], n + 1)[:-1]
    return np.stack([np.interp(at, arc, closed[:, 0]), np.interp(at, arc, closed[:, 1])], axis=1)


class _FlatteningPen:
    """A fontTools segment pen collecting contours as polylines (curves cut into ``pieces`` chords)."""

    def __init__(self, glyph_set, pieces: int = 12) -> None:
        from fontTools.pens.basePen import BasePen

        contours: list[list[np.ndarray]] = []

        class Pen(BasePen):
            def _moveTo(self, pt):
                contours.append([np.asarray(pt, float)[None]])

            def _lineTo(self, pt):
                contours[-1].append(np.asarray(pt, float)[None])

            def _curveToOne(self, p1, p2, p3):
                start = contours[-1][-1][-1]
                contours[-1].append(_bezier(np.array([start, p1, p2, p3], float), pieces))

            def _qCurveToOne(self, p1, p2):
                start = contours[-1][-1][-1]
                contours[-1].append(_bezier(np.array([start, p1, p2], float), pieces))

        self.pen = Pen(glyph_set)
        self.contours = contours

    def polylines(self) -> list[np.ndarray]:
        return [np.concatenate(parts) for parts in self.contours if sum(len(p) for p in parts) >= 3]


def glyph_outlines(face: FontFace, chars: str = CHARS, step: float = 0.06
                   ) -> list[tuple[list[np.ndarray], float]] | None:
    """Per char: (contours, advance), in cap heights (y up, origin at the glyph's left baseline).

    Each contour is (k, 2), resampled at about ``step`` cap heights. None if
    the face lacks a char or cannot be read by fontTools.
    """
    from fontTools.pens.boundsPen import BoundsPen
    from fontTools.ttLib import TTFont, TTLibError

    try:
        font = TTFont(face.path, fontNumber=face.index, lazy=True)
        glyph_set = font.getGlyphSet()
        cmap = font.getBestCmap() or {}
        names = [cmap.get(ord(c)) for c in chars]
        if None in names:
            return None
        bounds = BoundsPen(glyph_set)
        glyph_set[cmap[ord("H")]].draw(bounds)
        if bounds.bounds is None or bounds.bounds[3] <= 0:
            return None
        cap = float(bounds.bounds[3])
        result = []
        for name in names:
            glyph = glyph_set[name]
            flat = _FlatteningPen(glyph_set)
            glyph.draw(flat.pen)
            contours = [_resample(c / cap, step) for c in flat.polylines()]
            if not contours:
                return None
            result.append((contours, float(glyph.width) / cap))
        return result
    except (TTLibError, KeyError, ValueError, AssertionError, OSError):
        return None


def pen_offsets(glyphs: list[tuple[list[np.ndarray], float]]) -> np.ndarray:
    """Glyphs written left to right on one line as (n, 3) rows ``(dx, dy, pen_up)``, float32.

    The pen starts at the origin; the first point of every contour is reached
    with the pen up (``pen_up`` 1), each contour is drawn and closed by
    returning to its start.
    """
    points, lifts, x = [], [], 0.0
    for contours, advance in glyphs:
        for contour in contours:
            closed = np.vstack([contour, contour[:1]]) + [x, 0.0]
            points.append(closed)
            lifts.append(np.r_[1.0, np.zeros(len(closed) - 1)])
        x += advance
    path = np.concatenate(points)
    deltas = np.diff(np.vstack([[0.0, 0.0], path]), axis=0)
    return np.column_stack([deltas, np.concatenate(lifts)]).astype(np.float32)


def stroke_lines(offsets: np.ndarray, start: tuple[float, float] = (0.0, 0.0)) -> list[np.ndarray]:
    """The pen-down polylines (each (k, 2), absolute) that ``offsets`` (n, 3) draws from ``start``."""
    position = np.asarray(start, float) + np.cumsum(offsets[:, :2], axis=0)
    lines, current = [], [np.asarray(start, float)]
    for point, up in zip(position, offsets[:, 2]):
        if up > 0.5:
            if len(current) > 1:
                lines.append(np.asarray(current))
            current = []
        current.append(point)
    if len(current) > 1:
        lines.append(np.asarray(current))
    return lines
