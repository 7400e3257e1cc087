"""One evaluation point's frame, shown: its vectors as images, and their path through the models.

The reports average over the points; this shows one.  `point_gallery` computes what is drawn,
as arrays (pure, no I/O): the point, the frame vectors at it from the perturbation code
(`perturbations.frame.build_frame`, the definition the frames stage pushes through the models)
and, per model, the relative sensitivity of each vector at each observed layer
(`metrics.relative_sensitivity` of the frames stage's Grams, at that point: nothing is pushed
through a model again).  `gallery_figure` draws a list of them and nothing else:

    per point   the image, then one row per family of its vectors as images (one diverging
                colour map centred on 0, one symmetric scale per family, in the vectors' own
                units: rotate per radian, translate per pixel, noise and decoder directions as
                built), and under them one heat map per model: rows the vectors, columns the
                observed layers, colour the relative sensitivity on a log scale centred on 1
                (> 1 amplified, < 1 suppressed relative to the signal), one scale for the figure

The report's figure (`reports/figures/frame_gallery.png`) shows `report_points` for
`default_models`; `nfbench show POINT` shows any one point for any models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import NFBenchError
from .frame_result import FrameResult
from .metrics import as_float64, relative_sensitivity

__all__ = ["PointFrame", "GALLERY_ROLES", "GALLERY_POINTS", "default_models", "report_points", "check_point",
           "point_gallery", "gallery_figure", "write_gallery"]

GALLERY_ROLES = ("standard", "augmentation", "adversarial")   # the models shown by default: one per role
GALLERY_POINTS = 3                                            # the report's figure: this many classes


@dataclass
class PointFrame:
    """What the gallery draws for one evaluation point.

    index:       the point's position among the evaluation points (0..B-1)
    point_id:    its index in the dataset's test split;  label: its class
    image:       [C, H, W] its pixels, in [0, 1]
    labels, families: the k frame vectors' labels (`rotate`, `noise/0`, `vae/0`, …) and families
    vectors:     [k, C, H, W] the frame vectors at the point, from the perturbation code
    models, roles, layers: the models shown, their roles and observed layers
    sensitivity: per model, [L, k] the relative sensitivity of each vector at each layer
    """

    index: int
    point_id: int
    label: int
    image: np.ndarray
    labels: list[str]
    families: list[str]
    vectors: np.ndarray
    models: list[str]
    roles: list[str]
    layers: list[list[str]]
    sensitivity: list[np.ndarray]


def default_models(roles: Mapping[str, str]) -> list[str]:
    """The first model (in params.yaml order) of each role of GALLERY_ROLES that the suite has:
    on the embedded suite std-s0, aug-s0 and adv-eps0_1-s0."""
    return [next(m for m, r in roles.items() if r == role) for role in GALLERY_ROLES if role in roles.values()]


def report_points(labels) -> list[int]:
    """The report figure's points: the first evaluation point of each of GALLERY_POINTS classes
    evenly spread over the classes present, lowest to highest (MNIST: digits 0, 4 and 9)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if not len(classes):
        return []
    picks = np.linspace(0, len(classes) - 1, min(GALLERY_POINTS, len(classes))).round().astype(int)
    return [int(np.flatnonzero(labels == classes[i])[0]) for i in picks]


def check_point(index: int, count: int, where: str = "the evaluation points") -> int:
    """`index` if it is a point of an evaluation set of `count`, else a one-line error naming the range."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < count:
        raise NFBenchError(f"point {index} is not an evaluation point: valid 0..{count - 1} "
                           f"({count} points in {where})")
    return int(index)


def point_gallery(index: int, x, y, ids, spec: Mapping, results: Mapping[str, FrameResult],
                  roles: Mapping[str, str], autoencoder=None) -> PointFrame:
    """What the gallery draws for evaluation point `index` (pure).

    x, y, ids: the evaluation points (B×C×H×W, labels, dataset indices), as the data stage wrote
    them; spec: the perturbations they were framed with (params.yaml `perturbations`);
    results: per model, its FrameResult at those points (the frames stage's file); roles: per
    model, its role; autoencoder: the protocol's, for the generative directions.
    """
    from .perturbations.frame import build_frame

    index = check_point(index, len(ids))
    at = slice(index, index + 1)
    frame = build_frame(spec, x[at], ids[at], autoencoder)
    for model_id, result in results.items():
        _check_result(model_id, result, ids, frame.labels)
    return PointFrame(
        index=index, point_id=int(ids[index]), label=int(y[index]), image=as_float64(x[index]),
        labels=list(frame.labels), families=list(frame.families), vectors=as_float64(frame.vectors[0]),
        models=list(results), roles=[str(roles.get(m, "other")) for m in results],
        layers=[list(r.layers) for r in results.values()],
        sensitivity=[as_float64(relative_sensitivity(r)[:, index, :]) for r in results.values()])


def _check_result(model_id: str, result: FrameResult, ids, labels: list[str]) -> None:
    """The frame file must be of these points and of this frame, else its Grams are of other vectors."""
    if [int(i) for i in result.point_ids] != [int(i) for i in ids]:
        raise NFBenchError(f"the frames of {model_id!r} are at other points than the evaluation points "
                           f"(rerun `nfbench frames`, or `dvc repro`)")
    if list(result.labels) != list(labels):
        raise NFBenchError(f"the frames of {model_id!r} are of other vectors ({', '.join(result.labels)}) than "
                           f"params.yaml perturbations ({', '.join(labels)}); rerun `nfbench frames`, or `dvc repro`")


# ---------------------------------------------------------------------------------------------
# Drawing: sizes in inches, at 100 dpi, for a figure 9 in (900 px) wide — the width the README shows

_WIDTH = 9.0
_CELL, _CELL_GAP, _CELL_TITLE = 0.64, 0.08, 0.2      # a frame vector's image, the gaps around it
_IMAGE = 1.75                                        # the point itself
_ROW = 0.135                                         # a heat-map row (one frame vector)
_HEAT_LEFT, _HEAT_GAP, _COLORBAR = 0.95, 0.16, 0.1
_TITLE, _GAP, _HEADER, _LAYER_LABELS, _POINT_GAP = 0.42, 0.3, 0.22, 0.45, 0.3
_CAPTION, _RIGHT = 0.62, 0.95
VECTOR_CMAP, SENSITIVITY_CMAP = "RdBu_r", "PuOr_r"
SENSITIVITY_RANGE = 16.0
CAPTION = ("Per point: its frame vectors as images (red +, blue −; one colour scale per family, in the perturbation "
           "code's units:\nrotate and shear per radian, translate per pixel, scale per unit) and, per model, the "
           "relative sensitivity of each vector\nat each layer (purple: suppressed, orange: amplified, relative to "
           "the signal).")
_FAMILY_NAMES = {"augmentation": "augmentation tangents", "noise": "noise directions",
                 "generative": "decoder directions"}


def _families(point: PointFrame) -> list[str]:
    return list(dict.fromkeys(point.families))


def _height(point: PointFrame) -> float:
    vectors = max(_IMAGE, len(_families(point)) * (_CELL + _CELL_TITLE + _CELL_GAP))
    return _TITLE + vectors + _GAP + _HEADER + _CELL_TITLE + len(point.labels) * _ROW + _LAYER_LABELS + _POINT_GAP


class _Place:
    """Axes placed by inches from the figure's top-left corner."""

    def __init__(self, fig, height: float):
        self.fig, self.height = fig, height

    def axes(self, left: float, top: float, width: float, height: float):
        h = self.height
        return self.fig.add_axes((left / _WIDTH, 1 - (top + height) / h, width / _WIDTH, height / h))


def _sensitivity_norm():
    """The heat maps' colour scale: logarithmic, centred on 1, from 1/SENSITIVITY_RANGE to
    SENSITIVITY_RANGE (beyond: the end colours), the same in every gallery so that they compare."""
    from matplotlib.colors import LogNorm

    return LogNorm(1 / SENSITIVITY_RANGE, SENSITIVITY_RANGE, clip=False)


def gallery_figure(points: Sequence[PointFrame]):
    """The gallery of `points` (each a `point_gallery` result), one block under the other."""
    from matplotlib.figure import Figure

    heights = [_height(p) for p in points]
    total = _CAPTION + sum(heights)
    fig = Figure(figsize=(_WIDTH, total), dpi=100)
    place = _Place(fig, total)
    fig.text(0.25 / _WIDTH, 1 - 0.1 / total, CAPTION, fontsize=8, va="top", linespacing=1.4)
    norm = _sensitivity_norm()
    top = _CAPTION
    for point, height in zip(points, heights):
        bottom = _draw_vectors(place, point, top)
        _draw_sensitivity(place, point, bottom + _GAP, norm)
        top += height
    return fig


def _draw_vectors(place: _Place, point: PointFrame, top: float) -> float:
    """The point's title, its image and one row of vector images per family; returns where they end."""
    fig = place.fig
    fig.text(0.25 / _WIDTH, 1 - (top + 0.22) / place.height,
             f"evaluation point {point.index}: test image #{point.point_id}, class {point.label}",
             fontsize=11, fontweight="bold", va="center")
    top += _TITLE
    ax = place.axes(0.25, top + _CELL_TITLE, _IMAGE, _IMAGE)
    image = np.clip(point.image, 0, 1)
    ax.imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title("the point", fontsize=8)
    _bare(ax)
    left = 0.25 + _IMAGE + 0.45
    row = top
    for family in _families(point):
        _vector_row(place, point, family, left, row)
        row += _CELL + _CELL_TITLE + _CELL_GAP
    return max(row, top + _CELL_TITLE + _IMAGE)


def _vector_row(place: _Place, point: PointFrame, family: str, left: float, top: float) -> None:
    """One family's vectors on one symmetric colour scale, with its colour bar at the row's end."""
    which = [i for i, f in enumerate(point.families) if f == family]
    scale = float(np.abs(point.vectors[which]).max()) or 1.0
    image = None
    for n, i in enumerate(which):
        ax = place.axes(left + n * (_CELL + _CELL_GAP), top + _CELL_TITLE, _CELL, _CELL)
        v = point.vectors[i]
        image = ax.imshow(v[0] if v.shape[0] == 1 else v.mean(0), cmap=VECTOR_CMAP, vmin=-scale, vmax=scale,
                          interpolation="nearest")
        image.set_gid(f"vector:{point.index}:{point.labels[i]}")        # how a test finds what is drawn
        ax.set_title(point.labels[i], fontsize=7.5, pad=2)
        _bare(ax)
        if n == 0:
            ax.set_ylabel(_FAMILY_NAMES.get(family, family).replace(" ", "\n"), fontsize=7.5)
    columns = max(len([f for f in point.families if f == g]) for g in _families(point))
    bar = place.axes(left + columns * (_CELL + _CELL_GAP), top + _CELL_TITLE, _COLORBAR, _CELL)
    cb = place.fig.colorbar(image, cax=bar, ticks=[-scale, 0, scale])
    cb.ax.set_yticklabels([f"−{scale:.2g}", "0", f"{scale:.2g}"], fontsize=7)


def _draw_sensitivity(place: _Place, point: PointFrame, top: float, norm) -> None:
    """Per model a heat map: rows the vectors, columns its layers, colour the relative sensitivity."""
    place.fig.text(_HEAT_LEFT / _WIDTH, 1 - (top + 0.08) / place.height,
                   "relative sensitivity of each vector along depth (input → logits), at this point, per model",
                   fontsize=8.5, va="center")
    top += _HEADER
    n = max(len(point.models), 1)
    width = (_WIDTH - _HEAT_LEFT - _RIGHT - (n - 1) * _HEAT_GAP) / n
    height = len(point.labels) * _ROW
    mesh = None
    for m, (model, role) in enumerate(zip(point.models, point.roles)):
        ax = place.axes(_HEAT_LEFT + m * (width + _HEAT_GAP), top + _CELL_TITLE, width, height)
        values = point.sensitivity[m].T                                             # [k, L]
        mesh = ax.imshow(np.ma.masked_invalid(values), cmap=_bad_grey(SENSITIVITY_CMAP), norm=norm,
                         aspect="auto", interpolation="nearest")
        mesh.set_gid(f"sensitivity:{point.index}:{model}")
        ax.set_title(f"{model} ({role})", fontsize=8.5, pad=3)
        ax.set_xticks(range(len(point.layers[m])), point.layers[m], rotation=90, fontsize=7)
        ax.set_yticks(range(len(point.labels)), point.labels if m == 0 else [], fontsize=7)
        ax.tick_params(length=0, pad=2)
        for edge in _family_edges(point.families):
            ax.axhline(edge, color="white", linewidth=1.5)
    if mesh is None:
        return
    bar = place.axes(_WIDTH - _RIGHT + 0.08, top + _CELL_TITLE, _COLORBAR, height)
    exponent = round(math.log2(SENSITIVITY_RANGE))
    ticks = [2.0 ** e for e in range(-exponent, exponent + 1)]
    cb = place.fig.colorbar(mesh, cax=bar, ticks=ticks, extend="both", extendfrac=0.03)
    cb.minorticks_off()
    cb.ax.set_yticklabels([f"1/{1 / t:g}" if t < 1 else f"{t:g}" for t in ticks], fontsize=7)
    cb.set_label("relative sensitivity (1: as at the input)", fontsize=7.5, labelpad=2)


def _family_edges(families: Sequence[str]) -> list[float]:
    return [i - 0.5 for i in range(1, len(families)) if families[i] != families[i - 1]]


def _bad_grey(name: str):
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="0.75")


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_linewidth(0.5)


def write_gallery(points: Sequence[PointFrame], path: str | Path) -> list[Path]:
    """PNG and SVG of the gallery at `path` (its suffix replaced); returns the paths written."""
    from .report import save_figure

    return save_figure(gallery_figure(points), Path(path).with_suffix(""))
