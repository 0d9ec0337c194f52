"""Weight initialisations (msgpass.layers.initializers, Affine's ``init=``): Xavier and He,
normal and uniform, have the spread of their formulas and are seeded."""

import numpy as np
import pytest

import msgpass as mp


@pytest.mark.parametrize("name, std", [("he_normal", np.sqrt(2 / 400)),
                                       ("xavier_normal", np.sqrt(2 / 700)),
                                       ("he_uniform", np.sqrt(6 / 400) / np.sqrt(3)),
                                       ("xavier_uniform", np.sqrt(6 / 700) / np.sqrt(3))])
def test_initialisations(name, std):
    w = mp.Affine(400, 300, seed=1, init=name).W
    assert w.std() == pytest.approx(std, rel=0.01)   # 120,000 draws: ~0.2 % sampling error
    np.testing.assert_array_equal(w, mp.Affine(400, 300, seed=1, init=name).W)   # seeded
