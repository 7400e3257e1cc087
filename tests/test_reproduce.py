"""Reproduce: the published checkpoints give the same numbers on another CPU's kernels.

Another CPU type runs other kernels: AVX-512 or AVX2 or none, another oneDNN code path.  The same
machine can run the portable ones (ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41), which
round differently — enough to make a retrained model another model — so the frames and
accuracies of a *published* checkpoint are computed here both ways.  Per point, rounding moves
a sensitivity by ~1e-6, except where a pre-activation sits within rounding of a ReLU's or
max-pool's kink and the unit's derivative switches (a fraction of a percent of them); the means
the claims and scores are built from must agree within the reproduce tolerance (`regression.ROUNDING`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.regression import ROUNDING

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("std-s0", "adv-eps0_2-s0")       # a standard and an adversarially trained model
POINTS = 16
PORTABLE = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}

# Runs in a fresh interpreter (the kernels are chosen when torch loads): frames of the published
# models at the first POINTS evaluation points with the suite's frame, and their clean and PGD
# accuracy on the first 200 test digits; prints JSON.
SCRIPT = r"""
import json, sys, torch
from pathlib import Path
from benchmark.config import load_params
from benchmark.data import eval_indices, load_dataset
from benchmark.frames import compute_frames
from benchmark.metrics import frame_statistics
from benchmark.models import Wanted, fetch, zoo
from benchmark.perturbations.frame import build_frame
from benchmark.models.training import evaluate_classifier
import dataclasses

models, points, root = sys.argv[1].split(","), int(sys.argv[2]), Path(sys.argv[3])
params = load_params()
wanted = ([Wanted("vae", params["generative"]["vae"], root, True)]
          + [Wanted(m, params["models"][m], root) for m in models])
list(fetch(wanted, params, progress=False))
data = load_dataset("mnist5k")
ids = eval_indices(data.test.labels, params["data"]["eval_points"], 0)[:points]
x = data.test.images(ids)
frame = build_frame(params["perturbations"], x, ids, zoo.load("vae", params["generative"]["vae"], root))
few = dataclasses.replace(data, test=data.test.subset(torch.arange(200)))
out = {"capability": torch.backends.cpu.get_cpu_capability()}
for m in models:
    net = zoo.load(m, params["models"][m], root)
    result = compute_frames(net, x, frame.vectors, "auto", labels=frame.labels, families=frame.families, point_ids=ids)
    stats = frame_statistics(result)
    acc = evaluate_classifier(net, few, eps=[0.2])
    out[m] = {"grams": result.grams.flatten().tolist(), "sensitivity": stats.sensitivity.flatten().tolist(),
              "vectors": len(result.labels),
              "rank": stats.rank.flatten().tolist(), "clean_acc": acc["clean_acc"], "robust_acc": acc["robust_acc@0.2"]}
print(json.dumps(out))
"""


def frames_under(env: dict, root: Path) -> dict:
    run = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(MODELS), str(POINTS), str(root)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_published_checkpoints_reproduce_on_other_kernels_to_the_rounding_tolerance(tmp_path):
    native = frames_under({}, tmp_path / "native")
    portable = frames_under(PORTABLE, tmp_path / "portable")
    assert portable["capability"] == "DEFAULT"
    if native["capability"] == "DEFAULT":
        pytest.skip("this machine's own kernels are the portable ones: nothing to compare")
    for m in MODELS:
        grams = np.array(native[m]["grams"]), np.array(portable[m]["grams"])
        assert not np.array_equal(*grams), f"{m}: the portable kernels gave bit-identical Grams"   # not vacuous
        shape = (-1, POINTS, native[m]["vectors"])
        a, b = (np.array(run[m]["sensitivity"]).reshape(shape) for run in (native, portable))
        assert np.array_equal(np.isfinite(a), np.isfinite(b))
        ok = np.isfinite(a)
        relative = np.abs(a - b)[ok] / np.maximum(np.abs(a[ok]), 1e-12)
        assert np.mean(relative < 1e-5) > 0.99, (m, np.mean(relative < 1e-5))      # rounding, but at kinks
        means = [np.nanmean(x, axis=(1, 2)) for x in (a, b)]                       # per layer, as claims use
        assert np.max(np.abs(means[0] - means[1]) / np.abs(means[0])) < ROUNDING["relative"], m
        rank = [np.array(run[m]["rank"]).reshape(-1, POINTS).mean(1) for run in (native, portable)]
        assert np.max(np.abs(rank[0] - rank[1]) / rank[0]) < ROUNDING["relative"], m
        assert native[m]["clean_acc"] == portable[m]["clean_acc"], m
        assert abs(native[m]["robust_acc"] - portable[m]["robust_acc"]) <= 0.01, m             # PGD: an image


@pytest.mark.slow
def test_retraining_on_other_kernels_gives_another_model():
    """Why published checkpoints exist: the same recipe trained on other kernels is not the same model."""
    script = ("import hashlib, sys, torch; from benchmark.data import load_dataset; "
              "from benchmark.models.training import train_classifier; from safetensors.torch import save; "
              "net, _ = train_classifier(load_dataset('mnist5k'), {'recipe': 'standard', 'seed': 0, 'epochs': 1}); "
              "print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(save(net.state_dict())).hexdigest())")
    runs = [subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, **env}).stdout.split() for env in ({}, PORTABLE)]
    if runs[0][0] == "DEFAULT":
        pytest.skip("this machine's own kernels are the portable ones")
    assert runs[0][1] != runs[1][1]
