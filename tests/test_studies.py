"""The research scripts under theory/ run, and their conclusions hold (small cases)."""

import numpy as np
import pytest


@pytest.mark.claim("C5.3")
def test_the_precision_study_shows_the_error_falling_with_the_digits(tmp_path, theory_script):
    pytest.importorskip("mpmath")
    study = theory_script("precision_study")
    rows = dict((name, (gap, err)) for name, gap, err in
                study.measure("3-4-tanh-4-sigmoid-3-logsoftmax-nll", digits=(20, 30, 40),
                              batch=2, reference_digits=80))
    for low, high in [("mp:20", "mp:30"), ("mp:30", "mp:40")]:
        for i in (0, 1):    # the gap to backprop, and the error against the 80-digit reference
            assert rows[high][i] < rows[low][i] * 1e-7   # ten more digits: ~1e-10 smaller
    assert 1e-18 < rows["float64"][1] < 1e-13            # float64 sits at its own round-off
    study.plot(list((k, *v) for k, v in rows.items()), tmp_path / "precision.png")
    assert (tmp_path / "precision.png").stat().st_size > 0


@pytest.mark.claim("C5.6")
@pytest.mark.claim("C5.7")
def test_the_vanishing_gradient_study(tmp_path, theory_script):
    study = theory_script("vanishing_gradients")
    results = {name: study.measure(name) for name in study.ACTIVATIONS}   # 30 layers, as stated
    sigmoid = results["sigmoid"]["mean |δ|"]
    assert sigmoid[-1] / sigmoid[0] > 1e15                       # top over bottom
    per_layer = (sigmoid[0] / sigmoid[-1]) ** (1 / (len(sigmoid) - 1))
    assert 0.2 < per_layer < 0.26
    for name, bound in (("tanh", 20), ("relu", 3)):     # measured 13 and 2.0
        m = results[name]["mean |δ|"]
        assert max(m) / min(m) < bound, (name, max(m) / min(m))
    study.plot(results, tmp_path / "vanishing.png")
    assert np.all(np.isfinite(results["relu"]["rms S"]))


@pytest.mark.claim("C6.3")
def test_the_message_magnitude_study(tmp_path, theory_script):
    pytest.importorskip("zarr")
    pytest.importorskip("xarray")
    import msgpass as mp
    from msgpass.training.data import Standardizer, load_digits, split
    study = theory_script("message_magnitudes")
    study.run(tmp_path / "run.zarr", steps=100, every=50)
    ds = mp.load_trace(tmp_path / "run.zarr")
    assert list(ds["step"].values) == [0, 50, 100]
    rows = study.summarise(ds)
    net = mp.build_network(study.SPEC, seed=study.SEED)     # the untrained network: step 0
    train, held_out = split(load_digits(), validation=0.2, seed=study.SEED)
    probe = Standardizer.fit(train.x, eps=1.6)(held_out.x[:study.PROBE])
    net.forward(probe, held_out.y[:study.PROBE])
    trace = net.backward(keep="all")
    for t in range(1, net.T + 1):
        values = trace.block(t).values
        assert np.all(rows[t]["total"] == values.size)          # every message, every step
        nonzero = np.abs(values[values != 0])
        assert rows[t]["zero"][0] == np.mean(values == 0)        # nothing subnormal here
        exponents = np.frexp(nonzero)[1] - 1                     # 2^e <= |δ| < 2^(e+1)
        counts = ds[f"histogram{t}"].sel(step=0)
        for e, n in zip(*np.unique(exponents, return_counts=True), strict=True):
            assert int(counts.sel(exponent=e)) == n, (t, e)
        median = np.sort(exponents)[(exponents.size - 1) // 2]   # the lower median's bin
        assert rows[t]["median"][0] in (median, np.sort(exponents)[exponents.size // 2])
    # what the figure shows: the top Affine layer's messages shrink as the loss falls
    assert ds["loss"].values[-1] < ds["loss"].values[0]
    assert rows[5]["median"][-1] < rows[5]["median"][0]
    study.plot(ds, rows, tmp_path / "magnitudes.png")
    assert (tmp_path / "magnitudes.png").stat().st_size > 0
