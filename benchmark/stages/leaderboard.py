"""`nfbench submit CARD...` and `nfbench leaderboard [verify ID | rescore]`: leaderboard entries and tables.

  submissions/<id>.yaml                model cards (SUBMITTING.md)
  models/submissions/<id>/             submitted models, fetched and verified like the suite's
  leaderboard/<suite>/<id>.json        submitted entries: a card scored by `nfbench submit`
  leaderboard/<suite>-suite/<id>.json  the suite's own models, derived from metrics/points by
                                       `nfbench leaderboard` (a DVC stage output)
  leaderboard/<suite>-suite/reference/ the standard models' statistics at the layers the scores
                                       read (`scores.reference_statistics`): what every entry is scored against
  reports/leaderboard.md, .html        rendered from the entry files alone

A submission is scored against the suite entries: their standard models' statistics are the
reference, and the evaluation points, autoencoder and parameters they were computed with must be
this checkout's.  So a fresh clone needs only the points and the autoencoder
(`dvc repro data fetch_generative`) to score a card, not the suite's models.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from .. import leaderboard as lb
from .. import scores
from ..cards import Card, load_card
from ..errors import NFBenchError, one_of
from ..executor import Task, open_executor, resolve_device
from ..metrics import FrameStatistics, frame_statistics
from ..models import Wanted, fetch, store
from ..pipeline import (
    LEADERBOARD,
    MODEL_METRICS,
    MODELS,
    POINTS,
    REPORTS,
    STATISTICS,
    SUBMISSIONS,
    SUBMITTED_MODELS,
    load_points,
    measure,
    model_record,
    root_of,
    suite_frame,
)
from ..storage import code_version, read_json, sha256_file, sha256_json, write_bytes, write_json, write_text
from . import announce

# provenance every entry of a suite shares; a submission must match the suite entries' values
_SHARED = {"params_sha256": "parameter set (params.yaml)",
           "points_sha256": "set of evaluation points (data/points.safetensors)",
           "generative_sha256": "autoencoder (models/<generative model>)"}


def submitted_dir(params: Mapping) -> Path:
    return LEADERBOARD / params["suite"]


def suite_dir(params: Mapping) -> Path:
    return LEADERBOARD / f"{params['suite']}-suite"


REFERENCE_DIR = "reference"     # beside the suite's entries: the standard models' statistics they are scored against


def read_reference(params: Mapping) -> dict[str, FrameStatistics]:
    """The standard models' statistics every entry of the suite is scored against."""
    directory = suite_dir(params) / REFERENCE_DIR
    paths = sorted(directory.glob("*.safetensors"))
    if not paths:
        raise NFBenchError(f"no reference statistics in {directory}/ to score against; run the "
                           f"suite's pipeline and `nfbench leaderboard` (dvc repro leaderboard)")
    return {p.stem: FrameStatistics.load(p) for p in paths}


def submit(params: Mapping, card_paths: list[str | Path], *, replace: bool = False) -> list[dict]:
    """Score model cards (one executor task each), writing each entry as it is scored, then
    re-render the leaderboard.

    A card that fails writes nothing and is named with its one-line error, after the others are
    written; nothing under leaderboard/ or reports/ is written when every card fails.
    """
    with announce("submit") as info:
        cards, failures = [], {}
        for card_path in card_paths:
            try:
                cards.append(_submittable(params, card_path, replace))
            except NFBenchError as exc:
                failures[str(card_path)] = str(exc)
        entries = _score_and_write(params, cards, failures)
        if entries:
            _, unranked = render(params)
            info["did"] = "; ".join(_summary(e, unranked) for e in entries)
            info["out"] = ", ".join([*(str(submitted_dir(params) / f"{e['id']}.json") for e in entries),
                                     f"{REPORTS}/leaderboard.md"])
        _raise_failures(failures, len(card_paths))
    return entries


def rescore(params: Mapping) -> list[dict]:
    """`nfbench leaderboard rescore`: score again every card in submissions/ whose entry is missing
    or was computed with another protocol (parameters, points, autoencoder), code or card.

    Each entry is written as its card finishes, so a rescore that is interrupted and run again
    scores only the cards left; failures as in `submit`.
    """
    with announce("rescore") as info:
        context = _context(params)
        paths = sorted(SUBMISSIONS.glob("*.yaml"))
        cards, failures = [], {}
        for card_path in paths:
            try:
                card = load_card(card_path, params)
            except NFBenchError as exc:
                failures[str(card_path)] = str(exc)
                continue
            if not _is_current(submitted_dir(params) / f"{card.id}.json", card, context):
                cards.append(card)
        current = len(paths) - len(cards) - len(failures)
        entries = _score_and_write(params, cards, failures)
        render(params)
        info["did"] = f"{len(entries)} of {len(paths)} cards scored, {current} entries already current"
        info["out"] = f"{submitted_dir(params)}/, {REPORTS}/leaderboard.md"
        _raise_failures(failures, len(paths))
    return entries


def _submittable(params: Mapping, card_path: str | Path, replace: bool) -> Card:
    """A checked card that may be submitted: it lives in submissions/ and, unless `replace`, has no entry yet."""
    card = load_card(card_path, params)
    if card.path.resolve().parent != SUBMISSIONS.resolve():
        raise NFBenchError(f"{card.path}: model cards live in {SUBMISSIONS}/ (where `nfbench leaderboard "
                           f"verify` finds them); move it to {SUBMISSIONS}/{card.id}.yaml")
    path = submitted_dir(params) / f"{card.id}.json"
    if path.exists() and not replace:
        raise NFBenchError(f"{card.path}: id: {card.id!r} already has an entry ({path}); "
                           f"pass --replace to overwrite it")
    return card


def _score_and_write(params: Mapping, cards: list[Card], failures: dict[str, str]) -> list[dict]:
    """Score `cards`, writing each entry (atomically) as it finishes; a failed card's error goes to
    `failures` (card file -> error)."""
    entries = []
    for card, entry, error in score_cards(params, cards, SUBMITTED_MODELS):
        if error is not None:
            failures[str(card.path)] = error
            continue
        write_json(submitted_dir(params) / f"{card.id}.json", entry)
        entries.append(entry)
    return entries


def _raise_failures(failures: Mapping[str, str], total: int) -> None:
    """The failed cards' errors as one line (a lone card's error as it is)."""
    if failures:
        head = f"{len(failures)} of {total} cards not scored: " if total > 1 else ""
        raise NFBenchError(head + "; ".join(failures.values()))


def _summary(entry: Mapping, unranked: Mapping[str, str]) -> str:
    s, why = entry["scores"], unranked.get(entry["id"])
    return (f"{entry['id']}: " + ", ".join(f"{k} {lb.format_score(k, s[k])}" for k in scores.SCORES)
            + (f"; not ranked: {why}" if why else "; ranked"))


def _is_current(path: Path, card: Card, context: Mapping) -> bool:
    """Whether the entry at `path` was scored from this card with this checkout's protocol and code."""
    if not path.is_file():
        return False
    provenance = read_json(path).get("provenance", {})
    return (provenance.get("card_sha256") == sha256_file(card.path)
            and all(provenance.get(k) == context[k] for k in (*_SHARED, "code_version")))


def score_cards(params: Mapping, cards: list[Card],
                models_root: Path) -> Iterator[tuple[Card, dict | None, str | None]]:
    """The entries of cards, one executor task each: (card, entry, None) or (card, None, its
    one-line error) as each finishes.  Here, on the driver, each model is fetched and checked (into
    `models_root`; a RobustBench checkpoint is downloaded to, or placed by the user in,
    models/submissions/robustbench/ whatever `models_root` is) and loaded; its accuracies and frames
    run where the executor puts the task; its statistics and scores are computed here again."""
    from ..data import load_suite_dataset
    from ..models import zoo

    if not cards:
        return
    context, reference = _scoring_context(params)
    by_id, manifests = {card.id: card for card in cards}, {}

    def prepare(card: Card, executor, data, at) -> tuple:
        [(_, manifests[card.id], _)] = fetch([Wanted(card.id, card.spec, models_root, what=f"{card.path}: model",
                                                     downloads=SUBMITTED_MODELS)], params)
        net = zoo.load(card.id, card.spec, models_root)
        return params, card.id, card.spec, executor.share(net), data, at, manifests[card.id]["sha256"]

    with _importable(SUBMISSIONS), open_executor(params) as executor:
        data, at = executor.share(load_suite_dataset(params["data"])), executor.share(suite_frame(params))
        tasks = [Task(card.id, functools.partial(prepare, card, executor, data, at)) for card in cards]
        for outcome in executor.run(measure, tasks, f"score {len(cards)} cards"):
            card = by_id[outcome.name]
            if outcome.error is not None:
                yield card, None, outcome.error
                continue
            accuracy, result = outcome.value
            stats = frame_statistics(result, model_record(params, card.id, card.spec, accuracy,
                                                          architecture=result.provenance["architecture"]))
            provenance = {**context, "card_file": f"{SUBMISSIONS}/{card.id}.yaml",
                          "card_sha256": sha256_file(card.path), "evaluated_on": accuracy["evaluated_on"],
                          "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
            yield card, _entry(params, stats, card.spec, manifests[card.id]["sha256"], reference, provenance,
                               card=card.raw), None


def _scoring_context(params: Mapping) -> tuple[dict, dict[str, FrameStatistics]]:
    """(provenance every entry shares, the reference statistics), once this checkout is shown to
    compute what the suite entries were computed with."""
    suite_entries = read_entries(suite_dir(params), shown=False)       # only their shared provenance is read
    if not suite_entries:
        raise NFBenchError(f"no suite entries in {suite_dir(params)}/ to score against; run the suite's "
                           f"pipeline and `nfbench leaderboard` (dvc repro leaderboard)")
    context = _context(params)
    for key, what in _SHARED.items():
        theirs = {e["provenance"][key] for e in suite_entries}
        if theirs != {context[key]}:
            raise NFBenchError(f"this checkout's {what} is not the one the entries in {suite_dir(params)}/ "
                               f"were computed with; rerun the suite's pipeline (dvc repro) so they agree")
    return context, read_reference(params)


def refresh(params: Mapping, *, statistics: Path = STATISTICS, accuracies: Path = MODEL_METRICS,
            points: Path = POINTS, autoencoder: Path | None = None, entries: Path | None = None) -> bool:
    """Write the suite's entries (into `entries`, by default leaderboard/<suite>-suite/) from the
    statistics in `statistics` (metrics/points) and `accuracies` (metrics/models.json); False
    (nothing written) when this checkout holds no statistics of the suite's models."""
    ids = list(params["models"])
    paths = {m: Path(statistics) / f"{m}.safetensors" for m in ids}
    evaluated = read_json(accuracies) if Path(accuracies).is_file() else {}
    if not all(p.is_file() for p in paths.values()) or not all(m in evaluated for m in ids):
        return False
    stats = {m: FrameStatistics.load(p) for m, p in paths.items()}
    if any(s.meta.get("suite") != params["suite"] for s in stats.values()):
        return False
    out = Path(entries or suite_dir(params))
    reference = scores.reference_statistics(stats, params["leaderboard"]["reference"])
    context = _context(params, points, autoencoder)
    cache: dict = {}                  # the reference's draws and aggregates, shared by every entry
    scored = {m: _entry(params, stats[m], params["models"][m], evaluated[m]["sha256"], reference,
                        {**context, "evaluated_on": evaluated[m]["accuracy"]["evaluated_on"]}, cache=cache)
              for m in ids}
    for m, st in reference.items():
        write_bytes(out / REFERENCE_DIR / f"{m}.safetensors", st.to_bytes())
    for m, entry in scored.items():
        write_json(out / f"{m}.json", entry)
    for stale in [*out.glob("*.json"), *(out / REFERENCE_DIR).glob("*.safetensors")]:
        if stale.stem not in (ids if stale.suffix == ".json" else reference):
            stale.unlink()
    return True


def render(params: Mapping, sort: str | None = None, *, entries: Path | None = None, submitted: Path | None = None,
           markdown: Path = REPORTS / "leaderboard.md",
           html: Path = REPORTS / "leaderboard.html") -> tuple[list[Path], dict[str, str]]:
    """`markdown` and `html` (reports/leaderboard.md, .html) from the suite's and the submitted entries
    (by default leaderboard/<suite>-suite/ and leaderboard/<suite>/): (the pages, id -> why not
    ranked for the entries that are not)."""
    shown = read_entries(entries or suite_dir(params)) + read_entries(submitted or submitted_dir(params))
    ranking = lb.Ranking.of(params, sort)
    standing = lb.rank(shown, ranking)
    pages = {Path(markdown): lb.leaderboard_markdown(standing, params["suite"], ranking),
             Path(html): lb.leaderboard_html(standing, params["suite"], ranking)}
    for path, text in pages.items():
        write_text(path, text)
    return list(pages), {e["id"]: reason for reason, e in standing[1]}


def run(params: Mapping, sort: str | None = None, *, statistics: Path = STATISTICS, accuracies: Path = MODEL_METRICS,
        points: Path = POINTS, autoencoder: Path | None = None, submitted: Path | None = None,
        entries: Path | None = None, markdown: Path = REPORTS / "leaderboard.md",
        html: Path = REPORTS / "leaderboard.html") -> None:
    """`nfbench leaderboard`: refresh the suite's entries (when its statistics are here) and render;
    the paths are the stage's inputs and outputs (None: the suite's leaderboard/ directories)."""
    lb.Ranking.of(params, sort)                    # a bad --sort fails before anything is written
    entries, submitted = Path(entries or suite_dir(params)), Path(submitted or submitted_dir(params))
    with announce("leaderboard") as info:
        read_entries(submitted, shown=False)          # an unreadable entry fails before anything is written
        refreshed = refresh(params, statistics=statistics, accuracies=accuracies, points=points,
                            autoencoder=autoencoder, entries=entries)
        written, _ = render(params, sort, entries=entries, submitted=submitted, markdown=markdown, html=html)
        counts = [len(list(Path(d).glob("*.json"))) for d in (entries, submitted)]     # both just read by render
        info["did"] = (f"{'refreshed' if refreshed else 'kept (no statistics of the suite here)'} "
                       f"{counts[0]} suite entries, {counts[1]} submitted")
        info["out"] = ", ".join(map(str, written))


def verify(params: Mapping, model_id: str) -> tuple[Path, bool, list[dict]]:
    """Recompute a submitted entry from its card (into a temporary models directory) and compare."""
    path = submitted_dir(params) / f"{model_id}.json"
    if not path.is_file():
        if model_id in params["models"]:
            raise NFBenchError(f"{model_id!r} is a model of suite {params['suite']}: its entry is derived from "
                               f"metrics/points by `nfbench leaderboard`, not recomputed from a card")
        known = [p.stem for p in submitted_dir(params).glob("*.json")]
        raise NFBenchError(f"{one_of(model_id, known, 'submitted entry')} (in {submitted_dir(params)}/)")
    entry = read_json(path)
    card = load_card(SUBMISSIONS / f"{model_id}.yaml", params)
    with tempfile.TemporaryDirectory(prefix="nfbench-verify-") as root:
        [(_, recomputed, error)] = score_cards(params, [card], Path(root))
    if error is not None:
        raise NFBenchError(error)
    ok, rows = lb.compare(entry, recomputed)
    return path, ok, rows


def read_entries(directory: Path, *, shown: bool = True) -> list[dict]:
    """The entries in one directory, by file name; `shown`: each must be one the tables can show
    (an entry of an earlier nfbench, without intervals or replicates, is named with its remedy)."""
    entries = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            entry = read_json(path)
        except ValueError as exc:
            raise NFBenchError(f"{path}: not a leaderboard entry ({exc})") from exc
        if shown and ("intervals" not in entry or "replicates" not in entry):
            remedy = (f"nfbench submit --replace {SUBMISSIONS}/{path.stem}.yaml" if entry.get("kind") == "submission"
                      else "nfbench leaderboard, where the suite's statistics are")
            raise NFBenchError(f"{path}: an entry of an earlier nfbench, without score intervals; score it "
                               f"again ({remedy})")
        entries.append(entry)
    return entries


@contextlib.contextmanager
def _importable(directory: Path) -> Iterator[None]:
    """Let entry points name modules kept beside the cards (submissions/<module>.py).

    Appended, not prepended: an installed package of the same name wins over a card's module.
    """
    path = str(directory.resolve())
    sys.path.append(path)
    try:
        yield
    finally:
        sys.path.remove(path)


def _context(params: Mapping, points: Path = POINTS, directory: Path | None = None) -> dict:
    """Provenance shared by every entry computed in this checkout with these parameters (the points
    file `points`; the autoencoder in `directory`, by default models/<name>)."""
    _, _, _, points_meta = load_points(points)
    generative = params["perturbations"].get("generative")
    autoencoder = None
    if generative:
        name = generative["model"]
        autoencoder = store.read_manifest(name, root_of(directory, name, "--autoencoder") if directory else MODELS)
        if autoencoder is None:
            raise NFBenchError(f"the autoencoder {generative['model']!r} has not been fetched; run "
                               f"`nfbench fetch {generative['model']}` (or dvc repro fetch_generative)")
    # what is computed; not how it is batched or laid out in memory (that changes float rounding only)
    scored = {"data": {k: v for k, v in params["data"].items() if k != "root"}, "attack": params["attack"],
              "perturbations": params["perturbations"], "generative": params["generative"],
              "frames": {k: v for k, v in params["frames"].items() if k not in ("chunk_size", "memory_format")},
              "reference": params["leaderboard"]["reference"]}
    return {"code_version": code_version(), "params_sha256": sha256_json(scored),
            "dataset_hash": points_meta["content_hash"], "points_sha256": sha256_file(points),
            "generative_sha256": autoencoder["sha256"] if autoencoder else None,
            "device": resolve_device(params["device"]).type}


def _entry(params: Mapping, stats: FrameStatistics, spec: Mapping, checkpoint_sha256: str,
           reference: Mapping[str, FrameStatistics], provenance: Mapping, *, card: Mapping | None = None,
           cache: dict | None = None) -> dict:
    record = stats.meta
    values, intervals, replicates = scores.scores(stats, reference, record["accuracy"], cache=cache)
    primary = params["leaderboard"]["primary"]
    return {"id": record["id"], "suite": params["suite"], "kind": "submission" if card else "suite",
            "display_name": record["display_name"], "role": record["role"], "architecture": record["architecture"],
            "eps": float(params["attack"]["eps"]),
            "attack": record["accuracy"].get("attack"),
            "card": dict(card) if card else None, "spec": dict(spec),
            "profile": lb.layer_profile(stats), "scores": values, "intervals": intervals,
            # the primary score's bootstrap replicates, drawn alike for every entry: its rank range
            "replicates": ({primary: scores.encode_replicates(replicates[primary])}
                           if replicates.get(primary) is not None else {}),
            "provenance": {**provenance, "checkpoint_sha256": checkpoint_sha256,
                           "reference": lb.reference_summary(reference), "reference_models": list(reference)}}
