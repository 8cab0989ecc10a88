"""Property-based fuzzing (hypothesis) of the parameter space, the simulator and the emulator.

The property everywhere: any input gives either a valid result (right shape,
finite where the inputs are) or a :class:`BayesemuInputError` (a ValueError);
never another exception type, never a silent wrong answer.
"""

import warnings

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reliability_toys import SPACE, STAMP, toy_dataset, train_tiny

from bayesemu import ExtrapolationWarning, Parameter, ParameterSpace, analytic_space
from bayesemu.errors import BayesemuInputError, ParameterError

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOWER = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------- parameter space
@st.composite
def spaces(draw):
    n = draw(st.integers(1, 5))
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), min_size=n,
                          max_size=n, unique=True))
    params = []
    for name in names:
        lo = draw(st.floats(-1e6, 1e6))
        width = draw(st.floats(1e-3, 1e6))
        params.append(Parameter(name, lo, lo + width))
    return ParameterSpace(tuple(params))


@FAST
@given(names=st.lists(st.text(max_size=6), min_size=1, max_size=3),
       lows=st.lists(any_float, min_size=3, max_size=3),
       highs=st.lists(any_float, min_size=3, max_size=3),
       constraints=st.lists(st.sampled_from(["reduced_shear", "bogus"]), max_size=1))
def test_space_definitions_build_or_raise_parameter_error(names, lows, highs, constraints):
    try:
        space = ParameterSpace(tuple(Parameter(n, lo, hi) for n, lo, hi in zip(names, lows, highs)),
                               tuple(constraints))
    except ParameterError:
        return
    assert all(np.isfinite(space.lows)) and all(space.lows < space.highs)
    assert ParameterSpace.from_dict(space.to_dict()) == space


@FAST
@given(space=spaces(), data=st.data())
def test_unit_maps_and_validate_on_random_spaces(space, data):
    u = data.draw(hnp.arrays(np.float64, (3, space.dim), elements=st.floats(0, 1)))
    theta = space.from_unit(u)
    np.testing.assert_allclose(space.to_unit(theta), u, atol=1e-6)
    np.testing.assert_array_equal(space.validate(theta), theta)  # inside: accepted as is
    # anything else: accepted, refused with ParameterError, or accepted with a warning
    values = data.draw(hnp.arrays(np.float64, (2, space.dim), elements=any_float))
    slack = 1e-9 * (space.highs - space.lows)  # validate's rounding tolerance
    inside = np.isfinite(values).all() and ((values >= space.lows - slack)
                                            & (values <= space.highs + slack)).all()
    for allow in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out = space.validate(values, allow_extrapolation=allow)
            except ParameterError:
                assert not inside
                continue
        assert np.isfinite(out).all()
        assert inside or (allow and any(issubclass(w.category, ExtrapolationWarning)
                                        for w in caught))


@FAST
@given(space=spaces(), keys=st.lists(st.text(max_size=5), max_size=4))
def test_mappings_with_random_names_are_refused_or_exact(space, keys):
    mapping = {k: 0.5 for k in keys}
    try:
        arr = space.as_array(mapping)
    except ParameterError:
        assert set(keys) != set(space.names)
        return
    assert set(keys) == set(space.names) and arr.shape == (space.dim,)


# ---------------------------------------------------------------- simulator
@SLOWER
@given(u=hnp.arrays(np.float64, 5, elements=st.floats(0, 1)))
def test_simulator_valid_theta_gives_finite_non_negative_image(u):
    from bayesemu.data import draw_analytic

    space = analytic_space()
    theta = space.from_unit(u)
    assume(np.hypot(theta[2], theta[3]) < 1)
    img = draw_analytic(theta, stamp=16)
    assert img.shape == (16, 16) and img.dtype == np.float32 and np.isfinite(img).all()
    # FFT convolution rings at the 1e-7 level of the peak; nothing more negative
    assert img.min() >= -1e-5 * img.max() and img.sum() > 0


@SLOWER
@given(theta=st.one_of(hnp.arrays(np.float64, st.sampled_from([(5,), (4,), (2, 5), (0,)]),
                                  elements=any_float),
                       st.lists(st.one_of(any_float, st.text(max_size=3)), max_size=6)),
       stamp=st.one_of(st.integers(-3, 20), st.floats(allow_nan=True), st.just("16")),
       scale=st.one_of(any_float, st.just(0.2)))
def test_simulator_invalid_input_is_a_parameter_error(theta, stamp, scale):
    from bayesemu.data import draw_analytic

    try:
        img = draw_analytic(theta, stamp=stamp, pixel_scale=scale)
    except BayesemuInputError:
        return
    assert np.isfinite(img).all() and img.shape[-2:] == (stamp, stamp)


# ----------------------------------------------------------------- emulator
@pytest.fixture(scope="module")
def emu():
    return train_tiny(toy_dataset(48), "pca-gp")


def _theta_arrays():
    shapes = st.sampled_from([(5,), (3, 5), (4,), (2, 6), (), (1, 1, 5)])
    inside = hnp.arrays(np.float64, shapes, elements=st.floats(0, 1)).map(
        lambda u: SPACE.from_unit(u) if u.ndim and u.shape[-1] == 5 else u)
    wild = hnp.arrays(np.float64, shapes, elements=any_float)
    return st.one_of(inside, wild)


@FAST
@given(theta=_theta_arrays(), allow=st.booleans())
def test_predict_gives_valid_images_or_an_input_error(emu, theta, allow):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        try:
            out = np.asarray(emu.predict(theta, allow_extrapolation=allow))
        except BayesemuInputError:
            return
    assert out.shape == theta.shape[:-1] + (STAMP, STAMP)
    scale = np.abs(theta).max() / np.abs(SPACE.highs).max() if theta.size else 0
    if scale < 1e3:  # far extrapolation may overflow float32; that is the opt-in's risk
        assert np.isfinite(out).all()


@FAST
@given(image=st.one_of(
    hnp.arrays(np.float64, st.sampled_from([(STAMP, STAMP), (STAMP, STAMP + 1), (3,),
                                            (2, STAMP, STAMP), ()]),
               elements=st.one_of(finite, any_float), fill=st.just(1.0)),
    st.lists(st.one_of(st.text(max_size=2), finite), max_size=3)))
def test_check_image_accepts_only_finite_images_of_the_model_shape(emu, image):
    """The validator that infer, infer_batch and the CLI use on observed images."""
    from bayesemu.inference.api import check_image

    if isinstance(image, list):
        with pytest.raises(BayesemuInputError):
            check_image(image, emu.image_shape, stack=True)
        return
    try:
        out = check_image(image, emu.image_shape, stack=True)
    except BayesemuInputError:
        assert (image.shape[-2:] != (STAMP, STAMP) or not np.isfinite(image).all()
                or np.abs(image).max() > np.finfo(np.float32).max)
        return
    assert out.dtype == np.float32 and out.shape[-2:] == (STAMP, STAMP)
    assert np.isfinite(out).all()


@pytest.fixture(scope="module")
def loglik(emu):
    return jax.jit(emu.log_likelihood)


@FAST
@given(u=hnp.arrays(np.float64, st.sampled_from([(5,), (4,), (2, 5)]), elements=st.floats(0, 1)),
       image=hnp.arrays(np.float32, st.sampled_from([(STAMP, STAMP), (STAMP * STAMP,), (8, 8)]),
                        elements=st.floats(-1e4, 1e4, width=32), fill=st.just(0.0)),
       sigma=st.floats(0.1, 1e3))
def test_log_likelihood_shapes_are_checked_and_values_finite(emu, loglik, u, image, sigma):
    theta = SPACE.from_unit(u) if u.shape[-1] == 5 else u
    try:
        value = float(loglik(theta.astype(np.float32), image, np.float32(sigma)))
    except BayesemuInputError:
        assert theta.shape != (5,) or image.shape != (STAMP, STAMP)
        return
    assert theta.shape == (5,) and image.shape == (STAMP, STAMP)
    assert np.isfinite(value)


@SLOWER
@given(n=st.integers(-3, 3))
def test_sample_count_is_checked(emu, n):
    try:
        out = emu.sample(jax.random.key(0), SPACE.from_unit(np.full(5, 0.5)), n)
    except BayesemuInputError:
        assert n < 1
        return
    assert out.shape == (n, STAMP, STAMP) and np.isfinite(np.asarray(out)).all()


@SLOWER
@given(sigma=st.one_of(any_float, st.text(max_size=3), st.none()))
def test_infer_noise_sigma_is_checked(sigma):
    from bayesemu.inference.api import check_noise_sigma

    try:
        s = check_noise_sigma(sigma)
    except BayesemuInputError:
        return
    assert np.isfinite(s) and s > 0
