"""The benchmark's methods compute the same Grams, so its timings compare like with like."""

import pytest
import torch

from benchmark.bench import Case, run_method, time_methods


@pytest.mark.parametrize("layers", ["all", "auto"])
def test_autograd_alternative_gives_the_engines_grams_on_the_same_layers(layers):
    case = Case("smallcnn", 8, points=2, vectors=3, layers=layers)
    model, x, v = case.build()
    engine = run_method(case, "engine", model, x, v)
    autograd = run_method(case, "autograd", model, x, v)
    inner = engine.grams[1:-1]                       # engine adds `input` and `logits` around the layers
    assert len(autograd) == len(inner) + 1           # autograd returns the layers, then the logits
    for got, want in zip(autograd, list(inner) + [engine.grams[-1]]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_time_methods_reports_each_methods_fastest_round_and_a_small_fd_error(monkeypatch):
    """Rounds interleave the methods; each method's figure is its fastest round (a clock that
    hands out known durations stands in for the wall clock)."""
    import types

    from benchmark import bench

    durations = {"plain": [3.0, 1.0, 2.0], "plain-cl": [0.5] * 3, "grams": [0.25] * 3, "engine": [5.0, 6.0, 4.0],
                 "engine-public": [6.0] * 3, "fd": [9.0, 7.0, 8.0], "autograd": [2.0] * 3}
    readings = iter(t for r in range(3) for m in bench.METHODS for t in (100.0 * r, 100.0 * r + durations[m][r]))
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(readings)))
    times, fd_error = time_methods(Case("smallcnn", 8, points=2, vectors=3), repeats=3, min_seconds=0)
    assert times == {"plain": 1.0, "plain-cl": 0.5, "grams": 0.25, "engine": 4.0, "engine-public": 6.0, "fd": 7.0,
                     "autograd": 2.0}
    assert next(readings, None) is None                  # three rounds of every method, no more
    assert fd_error < 0.05


@pytest.mark.parametrize("plain, channels_last, layout", [(1.0, 2.0, "contiguous"), (2.0, 1.0, "channels_last")])
def test_the_engine_is_timed_in_the_layout_of_the_faster_plain_forward(monkeypatch, plain, channels_last, layout):
    """Channels-last is not faster on every CPU: the engine runs as its fastest baseline does; a
    slow warm-up round does not count."""
    import types

    from benchmark import bench

    rounds = [{"plain": 9.0, "plain-cl": 0.1}] + [{"plain": plain, "plain-cl": channels_last}] * 3
    readings = iter(t for r, times in enumerate(rounds) for m in bench.PLAIN for t in (100.0 * r, 100.0 * r + times[m]))
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(readings)))
    batches = []
    run = bench.run_method
    monkeypatch.setattr(bench, "run_method", lambda case, method, model, x, v: batches.append(v.shape[:2]) or run(
        case, method, model, x, v))
    assert bench.faster_layout(Case("smallcnn", 8, points=5, vectors=3, chunk_size=6)) == layout
    assert next(readings, None) is None
    assert set(batches) == {(2, 3)}                  # one chunk's points (6 // 3), not all five

    timed = []
    monkeypatch.setattr(bench, "faster_layout", lambda case: layout)
    monkeypatch.setattr(bench, "time_methods", lambda case, repeats, methods: (
        timed.append(case.memory_format) or {"plain": plain, "plain-cl": channels_last, "engine": 1.5}, None))
    rows = bench.bench_frames([Case("smallcnn", 8, points=2, vectors=3)], memory=False, echo=lambda _: None,
                              methods=("plain", "plain-cl", "engine"))
    assert timed == [layout]
    assert {r["method"]: r["layout"] for r in rows} == {"plain": "contiguous", "plain-cl": "channels_last",
                                                        "engine": layout}


def test_both_plain_forwards_and_both_engine_paths_compute_the_same_things():
    """The channels-last baseline is the same forward pass; the public path the same frames."""
    case = Case("smallcnn", 8, points=2, vectors=3)
    model, x, v = case.build()
    torch.testing.assert_close(run_method(case, "plain-cl", model, x, v), run_method(case, "plain", model, x, v),
                               rtol=1e-5, atol=1e-6)
    fast, public = run_method(case, "engine", model, x, v), run_method(case, "engine-public", model, x, v)
    torch.testing.assert_close(public.grams, fast.grams, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("chunk_size", [6, 2])
def test_the_plain_forwards_take_chunks_as_the_engine_does_and_give_the_same_outputs(chunk_size):
    """At most `chunk_size` inputs per forward (whole points, or one point's vectors when k is
    larger), the outputs in the B·k order of one forward over them all."""
    case = Case("smallcnn", 8, points=3, vectors=3, chunk_size=chunk_size)
    model, x, v = case.build()
    whole = model((x.unsqueeze(1) + v).flatten(0, 1))
    sizes = []
    model.register_forward_pre_hook(lambda _m, inputs: sizes.append(len(inputs[0])))
    for method in ("plain", "plain-cl"):
        sizes.clear()
        torch.testing.assert_close(run_method(case, method, model, x, v), whole, rtol=1e-5, atol=1e-6)
        assert sizes == ([6, 3] if chunk_size == 6 else [2, 1, 2, 1, 2, 1])   # the channels-last copy: its hook


def test_every_ratio_is_to_the_fastest_plain_forward(monkeypatch):
    from benchmark import bench

    monkeypatch.setattr(bench, "time_methods", lambda case, repeats, methods: (
        {"plain": 2.0, "plain-cl": 1.0, "grams": 0.25, "engine": 1.5}, None))
    rows = bench.bench_frames([Case("smallcnn", 8, points=2, vectors=3)], memory=False, echo=lambda _: None,
                              methods=("plain", "plain-cl", "grams", "engine"))
    assert {r["method"]: r["× plain"] for r in rows} == {"plain": 2.0, "plain-cl": 1.0, "grams": 0.25, "engine": 1.5}
    # the floor is the fastest plain forward plus the Grams alone; only a method that makes Grams has a ratio to it
    assert {r["method"]: r["× floor"] for r in rows} == {"plain": "", "plain-cl": "", "grams": "", "engine": 1.2}


@pytest.mark.parametrize("layers", ["all", "auto"])
def test_the_grams_alone_are_one_gram_per_layer_the_engine_reports(layers):
    """The floor's Gram work is the engine's: the same layers, shapes, and reduction (of other values)."""
    case = Case("smallcnn", 8, points=2, vectors=3, layers=layers)
    model, x, v = case.build()
    engine, alone = run_method(case, "engine", model, x, v), run_method(case, "grams", model, x, v)
    assert [g.shape for g in alone] == [g.shape for g in engine.grams] and len(alone) == len(engine.layers)
    assert all(g.dtype == torch.float64 and torch.linalg.eigvalsh(g).min() > -1e-9 for g in alone)
    assert run_method(case, "grams", model, x, v)[1].equal(alone[1])       # the same tangents each run
    assert run_method(case, "grams", model, x, v[:, :2])[1].shape == (2, 2, 2)   # new ones for another k


def test_cpu_name_gives_the_first_processors_model_with_its_family_and_model_numbers():
    """A VM may name every EPYC "AMD EPYC": the family and model numbers tell Zen 1 from Zen 4."""
    from benchmark.bench import cpu_name

    processor = "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: {model}\n" \
                "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2\n"
    cpuinfo = processor.format(n=0, family=25, model=17) + "\n" + processor.format(n=1, family=23, model=1) + "\n"
    assert cpu_name(cpuinfo) == "AMD EPYC (cpu family 25, model 17)"
    assert cpu_name("processor\t: 0\nmodel name\t: Neoverse-N1\n") == "Neoverse-N1"
    assert cpu_name("") != ""
