"""`nfbench`: one subcommand per pipeline stage, plus models / suite / check / show / bench / submit / leaderboard.

Every subcommand validates params.yaml first (errors name the key path) and exits 2 with a
one-line message on bad input.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from pathlib import Path

from .errors import NFBenchError
from .vocab import BENCH_METHODS


def _params(args) -> dict:
    from .config import load_params

    return load_params(args.params)


def _tracked(params: dict, args) -> bool:
    """Check a remote MLflow server answers before heavy work; --no-track skips MLflow."""
    if args.no_track:
        return False
    from .tracking import check_reachable, tracking_uri

    check_reachable(tracking_uri(params))
    return True


def _paths(args) -> dict[str, Path]:
    """The stage's input and output paths given on the command line (`_path_options`), by keyword."""
    return {name: getattr(args, name) for name in args.paths}


def cmd_data(args) -> None:
    from .models.checks import check_layer_names
    from .stages import data

    params = _params(args)
    check_layer_names(params)
    data.run(params, download=args.download, **_paths(args))


def cmd_sources(args) -> None:
    from .stages import sources

    sources.run(_params(args), **_paths(args))


def cmd_fetch(args) -> None:
    from .pipeline import suite_params
    from .stages import fetch

    params = suite_params(_params(args), args.suite)
    if args.models and args.suite:
        raise NFBenchError("give either model ids or --suite, not both")
    if args.models:
        ids = args.models
        fetch.wanted(params, ids)                        # unknown ids fail before anything else
    elif args.suite:
        ids = list(params["generative"]) + list(params["model_groups"])
    else:
        raise NFBenchError("name model ids, or --suite NAME for all models of a suite")
    fetch.run(params, ids, track=_tracked(params, args), **_paths(args))


def cmd_evaluate(args) -> None:
    from .stages import evaluate

    params = _params(args)
    evaluate.run(params, args.models, track=_tracked(params, args), **_paths(args))


def cmd_frames(args) -> None:
    from .stages import frames

    params = _params(args)
    method = "fd" if args.fallback == "finite-difference" else None
    frames.run(params, args.models, method=method, track=_tracked(params, args), **_paths(args))


def cmd_metrics(args) -> None:
    from .stages import metrics

    metrics.run(_params(args), **_paths(args))


def cmd_claims(args) -> None:
    from .stages import claims

    params = _params(args)
    claims.run(params, track=_tracked(params, args), **_paths(args))


def cmd_report(args) -> None:
    from .stages import report

    params = _params(args)
    report.run(params, track=_tracked(params, args), **_paths(args))


def cmd_submit(args) -> None:
    from .pipeline import suite_params
    from .stages import leaderboard

    leaderboard.submit(suite_params(_params(args), args.suite), args.cards, replace=args.replace)


def cmd_leaderboard_rescore(args) -> None:
    from .pipeline import suite_params
    from .stages import leaderboard

    leaderboard.rescore(suite_params(_params(args), args.suite))


def cmd_leaderboard(args) -> None:
    from .pipeline import suite_params
    from .stages import leaderboard

    leaderboard.run(suite_params(_params(args), args.suite), sort=args.sort, **_paths(args))


def cmd_leaderboard_verify(args) -> None:
    from tabulate import tabulate

    from .pipeline import suite_params
    from .stages import leaderboard

    path, ok, rows = leaderboard.verify(suite_params(_params(args), args.suite), args.model)
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".10g", missingval="—"))
    if not ok:
        moved = [r["value"] for r in rows if r["status"] != "ok"]
        raise NFBenchError(f"{path} does not reproduce from its card: {', '.join(moved)} beyond tolerance")
    print(f"{path}: all {len(rows)} values reproduce from its card")


def cmd_leaderboard_schema(args) -> None:
    from .cards import card_schema_text

    sys.stdout.write(card_schema_text())


def _reference(args, params) -> Path:
    """The reference claims: --reference DIR, else the suite's own, reports/reference/<suite>/."""
    from .pipeline import REFERENCE

    return (Path(args.reference) if args.reference else REFERENCE / params["suite"]) / "claims.json"


def cmd_check(args) -> None:
    from .pipeline import CLAIMS
    from .regression import check

    text, problem = check(Path(args.claims or CLAIMS), _reference(args, _params(args)), args.mode, update=args.update)
    print(text)
    if problem:
        raise NFBenchError(problem)


def cmd_replicate(args) -> None:
    from . import replicate

    params = _params(args)
    text, problem = replicate.judge(params, args.seeds, _reference(args, params))
    print(text)
    if problem:
        raise NFBenchError(problem)


def cmd_publish(args) -> None:
    from .models.published import publish
    from .pipeline import MODELS

    params = _params(args)
    ids = args.models or [m for group in ("generative", "models") for m, spec in params[group].items()
                          if spec["source"] == "local"]
    records = publish(params, ids, models_root=MODELS)
    for model_id, record in records.items():
        print(f"[publish {model_id}] {record['checkpoint']} sha256 {record['sha256'][:12]}")
    print(f"suites/{params['suite']}.yaml and {args.params}: published checkpoints of {len(records)} models recorded; "
          f"commit zoo/{params['suite']}/ with them, then `dvc repro` and `nfbench check --update`")
    if any(m in params["generative"] for m in records):
        print("note: the autoencoder defines the on-manifold directions, so a new one changes the protocol: "
              "every frame and leaderboard entry of the suite must be recomputed (`nfbench leaderboard verify` "
              "refuses entries made with the old one)")


def cmd_models_list(args) -> None:
    from tabulate import tabulate

    from .models import store
    from .pipeline import model_root, suite_params

    params = suite_params(_params(args), args.suite)
    rows = []
    for group, generative in ((params["generative"], True), (params["models"], False)):
        for model_id, spec in group.items():
            state = store.status(model_id, model_root(spec))
            manifest = store.read_manifest(model_id, model_root(spec)) or {}
            if state == "present":
                state = store.obtained(manifest)
            elif state == "stale":
                state = "stale: its source checkpoint changed (dvc repro refetches it)"
            rows.append({"id": model_id, "source": spec.get("source", "local"),
                         "role": "generative" if generative else spec["role"],
                         "status": state, "sha256": manifest.get("sha256", "")[:16]})
    print(f"suite {params['suite']}")
    print(tabulate(rows, headers="keys", tablefmt="github"))


def cmd_suite_use(args) -> None:
    from .config import use_suite
    from .stages.leaderboard import submitted_dir

    params = use_suite(args.name, Path(args.params))
    submitted_dir(params).mkdir(parents=True, exist_ok=True)     # the leaderboard stage reads it, even empty
    print(f"{args.params}: suite {args.name} ({len(params['models'])} models); run `dvc repro`")


def cmd_suite_list(args) -> None:
    from .config import load_suite, suite_names

    for name in suite_names():
        print(f"{name:28s} {(load_suite(name).get('description') or '').strip().splitlines()[0]}")


def cmd_show(args) -> None:
    from .stages import report

    print(report.show(_params(args), args.point, args.models, args.out))


def cmd_bench_frames(args) -> None:
    from .bench import Case, bench_frames

    cases = []
    for spec in args.models:
        model, _, size = spec.partition("@")
        if not size.isdigit():
            raise NFBenchError(f"--models {spec!r}: expected MODEL@SIZE, e.g. resnet18@64")
        cases += [Case(model, int(size), args.points, args.vectors, args.chunk_size, args.device, layers)
                  for layers in args.layers]
    bench_frames(cases, repeats=args.repeats, memory=not args.no_memory, methods=tuple(args.methods))


def cmd_bench_executor(args) -> None:
    from .bench_executor import bench_executor

    bench_executor(_params(args), args.models, tuple(args.workers), args.repeats)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nfbench", description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _stage_commands(sub)
    _leaderboard_commands(sub)
    _suite_commands(sub)
    _show_command(sub)
    return p


def _point(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a point index: {text!r} (a whole number, 0 for the first)") from None


def _show_command(sub) -> None:
    sp = _command(sub, "show", cmd_show, "one evaluation point's frame: its vectors as images and each one's "
                                         "relative sensitivity along depth, from the frame files")
    sp.add_argument("point", type=_point, metavar="POINT", help="index of the evaluation point (0..N-1)")
    sp.add_argument("--model", dest="models", action="extend", nargs="+", metavar="ID",
                    help="the models to show (default: the first standard, augmentation and "
                         "adversarial model)")
    sp.add_argument("--out", help="the figure's path (.png; an .svg is written beside it; "
                                  "default: reports/show/frame_point<POINT>.png)")


def _command(sub, name, func, help_text, tracked=False) -> argparse.ArgumentParser:
    """A subcommand; a stage's has its `--NAME PATH` options (`_stage_paths`)."""
    sp = sub.add_parser(name, help=help_text, description=help_text)
    sp.set_defaults(func=func)
    if tracked:
        sp.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    _path_options(sp, _stage_paths().get(name, {}))
    return sp


def _suite_option(sp, help_text: str = "another suite than params.yaml's: suites/NAME.yaml with params.yaml's "
                                       "global settings", **kwargs) -> None:
    sp.add_argument("--suite", metavar="NAME", help=help_text, **kwargs)


@functools.cache
def _stage_paths() -> dict[str, dict[str, tuple[Path | None, str]]]:
    """Each stage command's input and output files, as `--NAME PATH` options: dvc.yaml passes every
    one of them, and tests/test_stage_paths.py checks they are the stage's declared deps and outs.
    The defaults are the pipeline's places (benchmark/pipeline.py), so `nfbench STAGE` works alone."""
    from . import pipeline as p

    autoencoder = (None, "the protocol's autoencoder, its directory read (default: models/<its name>)")
    statistics, accuracies = (p.STATISTICS, "per-point statistics read"), (p.MODEL_METRICS, "model accuracies read")
    return {
        "data": {"out": (p.POINTS, "evaluation points written"),
                 "summary": (p.DATA_SUMMARY, "dataset summary written")},
        "sources": {"out": (p.SOURCES, "directory of the source records written, <entry>.json")},
        "fetch": {"out": (None, "the one entry's directory written (default: models/<ID>)")},
        "evaluate": {"models_dir": (p.MODELS, "models directory read"), "out": (p.MODEL_METRICS, "accuracies written")},
        "frames": {"points": (p.POINTS, "evaluation points read"), "models_dir": (p.MODELS, "models directory read"),
                   "out": (p.FRAMES, "directory of the frame files written"),
                   "plots": (p.PLOTS, "directory of the per-layer series written")},
        "metrics": {"frames": (p.FRAMES, "frame files read"), "accuracies": accuracies,
                    "out": (p.STATISTICS, "directory of the statistics written"),
                    "summary": (p.SUMMARY, "per-layer summary written")},
        "claims": {"statistics": statistics, "tasks": (p.TASKS, "directory of the task files read"),
                   "out": (p.CLAIMS, "claims written")},
        "report": {"claims": (p.CLAIMS, "claims read"), "statistics": statistics,
                   "points": (p.POINTS, "evaluation points read (gallery)"),
                   "frames": (p.FRAMES, "frame files read (gallery)"), "autoencoder": autoencoder,
                   "markdown": (p.REPORTS / "claims.md", "claims table written"),
                   "latex": (p.REPORTS / "claims.tex", "LaTeX claims table written"),
                   "layers": (p.REPORTS / "layers.md", "per-layer table written"),
                   "figures": (p.REPORTS / "figures", "directory of the figures written")},
        "leaderboard": {"statistics": statistics, "accuracies": accuracies,
                        "points": (p.POINTS, "evaluation points read (provenance)"), "autoencoder": autoencoder,
                        "submitted": (None, "submitted entries read (default: leaderboard/<suite>)"),
                        "entries": (None, "directory of the suite's entries written "
                                          "(default: leaderboard/<suite>-suite)"),
                        "markdown": (p.REPORTS / "leaderboard.md", "leaderboard page written"),
                        "html": (p.REPORTS / "leaderboard.html", "HTML leaderboard page written")},
    }


def _path_options(sp, options: dict[str, tuple[Path | None, str]]) -> None:
    """`--NAME PATH` per entry of `options` (name: (default, what)); `_paths(args)` collects them."""
    for name, (default, what) in options.items():
        sp.add_argument(f"--{name.replace('_', '-')}", dest=name, type=Path, default=default, metavar="PATH",
                        help=what if default is None else f"{what} (default: {default})")
    sp.set_defaults(paths=tuple(options))


def _stage_commands(sub) -> None:
    """One per DVC stage, in pipeline order."""
    stage = functools.partial(_command, sub)
    sp = stage("data", cmd_data, "evaluation points of the suite's dataset (stage 1)")
    sp.add_argument("--download", action="store_true",
                    help="download a torchvision dataset (mnist, cifar10) into data.root first (needs network)")
    stage("sources", cmd_sources, "download the models' missing source checkpoints and record their sha256 (stage 2)")
    sp = stage("fetch", cmd_fetch, "install a model: its published checkpoint, or train, download or import it "
                                   "(stage 3)", tracked=True)
    sp.add_argument("models", nargs="*", metavar="ID",
                    help="params.yaml entries (an entry with seeds: all its models), model ids or autoencoders")
    _suite_option(sp, "fetch every model of this suite")
    sp = stage("evaluate", cmd_evaluate, "clean and robust accuracy of the suite's models (stage 4)", tracked=True)
    sp.add_argument("models", nargs="*", metavar="ID", help="model ids from params.yaml (default: all)")
    sp = stage("frames", cmd_frames, "neural frames of the suite's models (stage 5)", tracked=True)
    sp.add_argument("models", nargs="*", metavar="ID", help="model ids from params.yaml (default: all)")
    sp.add_argument("--fallback", choices=["finite-difference"],
                    help="central finite differences instead of forward-mode AD (slower, approximate; "
                         "for operators without forward AD)")
    stage("metrics", cmd_metrics, "per-point statistics of all frames (stage 6)")
    stage("claims", cmd_claims, "evaluate the claims in tasks/ (stage 7)", tracked=True)
    stage("report", cmd_report, "tables and figures under reports/ (stage 8)", tracked=True)
    sp = stage("leaderboard", cmd_leaderboard,
               "suite entries and reports/leaderboard.md/html from the entries (stage 9); verify ID re-checks one")
    _suite_option(sp)
    sp.add_argument("--sort", help="score to rank by (default: the suite's leaderboard.primary)")
    what = sp.add_subparsers(dest="what")
    verify = what.add_parser(
        "verify", help="recompute a submitted entry from its card; exit non-zero when it does not reproduce "
                       "within tolerance")
    verify.add_argument("model", help="id of a submitted entry (leaderboard/<suite>/<id>.json)")
    _suite_option(verify, default=argparse.SUPPRESS)
    verify.set_defaults(func=cmd_leaderboard_verify)
    rescore = what.add_parser(
        "rescore", help="score again every card in submissions/ whose entry is missing or stale (another protocol, "
                        "code or card), one executor task per card; rerun after an interruption to finish")
    _suite_option(rescore, default=argparse.SUPPRESS)
    rescore.set_defaults(func=cmd_leaderboard_rescore)
    what.add_parser("schema", help="print the model card's JSON Schema (submissions/card.schema.json is this "
                                   "output)").set_defaults(func=cmd_leaderboard_schema)


def _reference_option(sp) -> None:
    from .pipeline import REFERENCE

    sp.add_argument("--reference", metavar="DIR", help=f"directory holding the reference claims.json "
                                                       f"(default: {REFERENCE}/<suite>/)")


def _leaderboard_commands(sub) -> None:
    """Submitting a model, checking and replicating the results, publishing checkpoints."""
    stage = functools.partial(_command, sub)
    sp = stage("submit", cmd_submit, "score model cards and add their entries to the leaderboard (one executor "
                                     "task per card)")
    sp.add_argument("cards", nargs="+", metavar="CARD",
                    help="model cards, submissions/<id>.yaml (see SUBMITTING.md)")
    _suite_option(sp)
    sp.add_argument("--replace", action="store_true", help="overwrite an existing entry with the same id")
    sp = stage("check", cmd_check, "compare claims with the committed reference: reproduced, or replicated")
    sp.add_argument("--mode", choices=["reproduce", "replicate"], default="reproduce",
                    help="reproduce (default): same checkpoints, so identical verdicts and values to float rounding; "
                         "replicate: retrained models, judged by verdict agreement")
    sp.add_argument("--claims", help="the claims to check (default: reports/claims.json)")
    _reference_option(sp)
    sp.add_argument("--update", action="store_true",
                    help="make the current results the reference (after an intended change; commit it)")

    sp = stage("replicate", cmd_replicate, "retrain the suite's models with other seeds (in .replicate/) and "
                                           "judge the claims' agreement with the reference")
    sp.add_argument("--seeds", type=int, nargs="+", required=True,
                    help="new seeds, as many as the suite's models use, mapped onto them in ascending order")
    _reference_option(sp)
    sp = stage("publish", cmd_publish, "publish models trained here as the suite's checkpoints (zoo/<suite>/)")
    sp.add_argument("models", nargs="*", metavar="ID",
                    help="model ids (default: every local model and autoencoder of the suite)")


def _suite_commands(sub) -> None:
    """The model zoo, the suite presets and the engine benchmark."""
    models = sub.add_parser("models", help="the model zoo").add_subparsers(dest="what", required=True)
    sp = models.add_parser("list", help="models of a suite with their status and sha256")
    _suite_option(sp)
    sp.set_defaults(func=cmd_models_list)

    suite = sub.add_parser("suite", help="suite presets").add_subparsers(dest="what", required=True)
    sp = suite.add_parser("use", help="load suites/NAME.yaml into params.yaml")
    sp.add_argument("name")
    sp.set_defaults(func=cmd_suite_use)
    suite.add_parser("list", help="available suites").set_defaults(func=cmd_suite_list)

    bench = sub.add_parser("bench", help="benchmarks that print figures").add_subparsers(dest="what", required=True)
    sp = bench.add_parser("frames", help="engine vs plain forward, finite differences and autograd.functional.jvp")
    sp.add_argument("--models", nargs="+", default=["smallcnn@28", "resnet18@64"],
                    help="MODEL@SIZE: smallcnn or a torchvision architecture (random weights)")
    sp.add_argument("--points", type=int, default=16)
    sp.add_argument("--vectors", type=int, default=32)
    sp.add_argument("--chunk-size", type=int, default=512)
    sp.add_argument("--repeats", type=int, default=3)
    sp.add_argument("--device", default="cpu")
    sp.add_argument("--layers", nargs="+", choices=["all", "auto"], default=["all", "auto"],
                    help="observe every leaf module, the pipeline's layers (`auto`), or both (default)")
    sp.add_argument("--methods", nargs="+", choices=BENCH_METHODS, default=list(BENCH_METHODS),
                    help="what to time (default: all); the fastest plain forward is always the baseline")
    sp.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    sp.set_defaults(func=cmd_bench_frames)
    sp = bench.add_parser("executor", help="scoring a zoo of the suite's models here vs on a local Ray cluster, "
                                           "and Ray's per-task overhead")
    sp.add_argument("--models", type=int, default=6, help="zoo size: the suite's first fetched classifiers")
    sp.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="CPUs of each local Ray cluster")
    sp.add_argument("--repeats", type=int, default=3)
    sp.set_defaults(func=cmd_bench_executor)


def main(argv: list[str] | None = None) -> int:
    # torchvision/robustbench import noise
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except NFBenchError as exc:
        print(f"nfbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nfbench: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
