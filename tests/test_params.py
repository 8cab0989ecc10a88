"""Parameter spaces: unit-cube maps, validation, constraints, serialisation."""

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bayesemu.errors import ExtrapolationWarning, ParameterError
from bayesemu.params import REDUCED_SHEAR, Parameter, ParameterSpace, analytic_space

SETTINGS = settings(max_examples=60, deadline=None)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def spaces(draw, min_dim=1, max_dim=6):
    """Random boxes with well separated bounds and distinct names."""
    dim = draw(st.integers(min_dim, max_dim))
    pnames = draw(st.lists(names, min_size=dim, max_size=dim, unique=True))
    params = []
    for name in pnames:
        low = draw(finite)
        width = draw(st.floats(min_value=1e-3, max_value=1e6))
        params.append(Parameter(name, low, low + width, unit=draw(st.sampled_from(["", "arcsec"]))))
    return ParameterSpace(tuple(params))


# --------------------------------------------------------------- the analytic space
def test_analytic_space_defaults_match_design():
    space = analytic_space()
    assert space.names == ("flux", "scale_radius", "g1", "g2", "psf_fwhm")
    np.testing.assert_array_equal(space.lows, [1e4, 0.1, -0.5, -0.5, 0.2])
    np.testing.assert_array_equal(space.highs, [1e5, 1.0, 0.5, 0.5, 0.4])
    assert space.units == ("counts", "arcsec", "", "", "arcsec")
    assert space.constraint_names == (REDUCED_SHEAR,)
    assert space.index("g2") == 3 and space["psf_fwhm"].high == 0.4


def test_with_bounds_replaces_only_named_bounds():
    space = analytic_space(flux=(1e3, 2e3))
    assert space["flux"].low == 1e3 and space["flux"].high == 2e3
    assert space["scale_radius"] == analytic_space()["scale_radius"]
    with pytest.raises(ParameterError, match="unknown parameter 'redshift'"):
        analytic_space(redshift=(0.0, 1.0))
    with pytest.raises(ParameterError, match="inverted"):
        analytic_space(flux=(2e3, 1e3))


def test_reduced_shear_box_must_stay_inside_unit_disc():
    # corner |g| = hypot(0.75, 0.75) = 1.06 >= 1
    with pytest.raises(ParameterError, match="reduced shear"):
        analytic_space(g1=(-0.75, 0.75), g2=(-0.75, 0.75))
    analytic_space(g1=(-0.7, 0.7), g2=(-0.7, 0.7))  # corner 0.99: allowed


def test_invalid_definitions_are_refused():
    with pytest.raises(ParameterError, match="identifier"):
        Parameter("scale radius", 0, 1)
    with pytest.raises(ParameterError, match="finite"):
        Parameter("x", 0, math.inf)
    with pytest.raises(ParameterError, match="inverted or empty"):
        Parameter("x", 1, 1)
    with pytest.raises(ParameterError, match="duplicate"):
        ParameterSpace((Parameter("x", 0, 1), Parameter("x", 0, 2)))
    with pytest.raises(ParameterError, match="at least one"):
        ParameterSpace(())
    with pytest.raises(ParameterError, match="unknown constraint"):
        ParameterSpace((Parameter("x", 0, 1),), ("positive",))
    with pytest.raises(ParameterError, match="needs parameters g1 and g2"):
        ParameterSpace((Parameter("g1", -0.1, 0.1),), (REDUCED_SHEAR,))


def test_subspace_keeps_order_and_drops_inapplicable_constraints():
    space = analytic_space()
    sub = space.subspace(["psf_fwhm", "flux"])
    assert sub.names == ("psf_fwhm", "flux") and sub.constraint_names == ()
    assert space.subspace(["g1", "g2"]).constraint_names == (REDUCED_SHEAR,)


# ------------------------------------------------------------------ unit cube maps
@SETTINGS
@given(spaces(), st.data())
def test_unit_round_trip(space, data):
    u = data.draw(hnp.arrays(np.float64, (3, space.dim),
                             elements=st.floats(0.0, 1.0, allow_nan=False)))
    theta = space.from_unit(u)
    assert np.all(theta >= space.lows - 1e-9 * (space.highs - space.lows))
    assert np.all(theta <= space.highs + 1e-9 * (space.highs - space.lows))
    # from_unit then to_unit is the identity up to float64 rounding of theta, relative
    # to the width: |theta| * eps / width
    scale = np.maximum(np.abs(space.lows), np.abs(space.highs)) / (space.highs - space.lows)
    tol = 4 * np.finfo(np.float64).eps * (1 + scale)
    assert np.all(np.abs(space.to_unit(theta) - u) <= tol)


@SETTINGS
@given(spaces(), st.data())
def test_to_unit_maps_bounds_to_0_and_1_and_inverts(space, data):
    np.testing.assert_allclose(space.to_unit(space.lows), 0.0, atol=1e-12)
    np.testing.assert_allclose(space.to_unit(space.highs), 1.0, atol=1e-12)
    theta = data.draw(hnp.arrays(np.float64, (space.dim,), elements=st.floats(0, 1)))
    theta = space.lows + theta * (space.highs - space.lows)
    back = space.from_unit(space.to_unit(theta))
    tol = 4 * np.finfo(np.float64).eps * np.maximum(np.abs(space.lows), np.abs(space.highs))
    assert np.all(np.abs(back - theta) <= tol + 1e-300)


def test_float32_stays_float32():
    space = analytic_space()
    u = np.full((4, 5), 0.25, dtype=np.float32)
    theta = space.from_unit(u)
    assert theta.dtype == np.float32
    assert space.to_unit(theta).dtype == np.float32
    np.testing.assert_allclose(space.to_unit(theta), u, atol=1e-6)


def test_unit_maps_work_on_jax_arrays_and_differentiate():
    import jax
    import jax.numpy as jnp

    space = analytic_space()
    grad = jax.grad(lambda t: space.to_unit(t).sum())(jnp.ones(5, dtype=jnp.float32))
    np.testing.assert_allclose(grad, 1.0 / (space.highs - space.lows), rtol=1e-6)


# ---------------------------------------------------------------------- validation
@SETTINGS
@given(st.data())
def test_validate_accepts_interior_points(data):
    space = analytic_space()
    u = data.draw(hnp.arrays(np.float64, (space.dim,), elements=st.floats(0, 1)))
    theta = space.from_unit(u)
    out = space.validate(theta)
    np.testing.assert_array_equal(out, theta)
    assert out.dtype == np.float64


@SETTINGS
@given(st.integers(0, 4), st.sampled_from([np.nan, np.inf, -np.inf]))
def test_validate_refuses_non_finite(col, bad):
    space = analytic_space()
    theta = (space.lows + space.highs) / 2
    theta[col] = bad
    with pytest.raises(ParameterError, match=f"'{space.names[col]}' is not finite"):
        space.validate(theta)


@SETTINGS
@given(st.integers(0, 4), st.booleans(), st.floats(1e-6, 10.0))
def test_validate_refuses_out_of_bounds_and_can_extrapolate(col, above, excess):
    space = analytic_space(g1=(-0.3, 0.3), g2=(-0.3, 0.3))
    theta = (space.lows + space.highs) / 2
    width = space.highs[col] - space.lows[col]
    theta[col] = space.highs[col] + excess * width if above else space.lows[col] - excess * width
    name = space.names[col]
    if name in ("g1", "g2") and excess * width + 0.3 >= 1:
        assume(False)  # would also violate |g| < 1, tested separately
    with pytest.raises(ParameterError, match=f"'{name}' .* outside the domain"):
        space.validate(theta)
    with pytest.warns(ExtrapolationWarning, match=name):
        out = space.validate(theta, allow_extrapolation=True)
    np.testing.assert_array_equal(out, theta)


def test_validate_tolerates_rounding_at_the_bounds():
    space = analytic_space()
    space.validate(space.highs * (1 + 1e-14))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space.validate(space.lows)


def test_reduced_shear_constraint_is_always_enforced():
    free = ParameterSpace((Parameter("g1", -2.0, 2.0), Parameter("g2", -2.0, 2.0)))
    free.validate([1.5, 0.0])  # no constraint declared: |g| > 1 is just a number
    space = analytic_space()
    theta = np.array([5e4, 0.5, 0.8, 0.7, 0.3])  # |g| = 1.063, outside the box too
    with pytest.raises(ParameterError, match=r"reduced shear \|g\| = 1.063"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtrapolationWarning)
            space.validate(theta, allow_extrapolation=True)


@SETTINGS
@given(names)
def test_validate_refuses_unknown_and_missing_names(extra):
    space = analytic_space()
    values = dict(zip(space.names, (space.lows + space.highs) / 2))
    if extra not in space.names:
        with pytest.raises(ParameterError, match=f"unknown parameter.*'{extra}'"):
            space.validate({**values, extra: 1.0})
    missing = dict(values)
    del missing["g2"]
    with pytest.raises(ParameterError, match="missing parameter.*g2"):
        space.validate(missing)


def test_validate_mapping_orders_columns_and_broadcasts():
    space = analytic_space()
    values = {"psf_fwhm": [0.3, 0.25], "g2": 0.1, "g1": 0.0, "scale_radius": 0.5, "flux": 2e4}
    out = space.validate(values)
    np.testing.assert_array_equal(out, [[2e4, 0.5, 0.0, 0.1, 0.3], [2e4, 0.5, 0.0, 0.1, 0.25]])


def test_validate_refuses_wrong_shape_and_non_numeric():
    space = analytic_space()
    with pytest.raises(ParameterError, match="last axis must have length 5"):
        space.validate(np.zeros((3, 4)))
    with pytest.raises(ParameterError, match="last axis"):
        space.validate(1.0)
    with pytest.raises(ParameterError, match="not numeric"):
        space.validate(["a", "b", "c", "d", "e"])


def test_error_names_the_row():
    space = analytic_space()
    theta = np.tile((space.lows + space.highs) / 2, (4, 1))
    theta[2, 1] = 5.0
    with pytest.raises(ParameterError, match=r"'scale_radius' = 5 \(row 2\)"):
        space.validate(theta)


# -------------------------------------------------------------------- serialisation
@SETTINGS
@given(spaces())
def test_dict_round_trip_is_exact_and_json_safe(space):
    d = json.loads(json.dumps(space.to_dict()))
    back = ParameterSpace.from_dict(d)
    assert back == space
    np.testing.assert_array_equal(back.lows, space.lows)
    np.testing.assert_array_equal(back.highs, space.highs)


def test_dict_round_trip_keeps_constraints_and_units():
    space = analytic_space(flux=(1e3, 1e6))
    assert ParameterSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space


@pytest.mark.parametrize("bad", [{}, {"parameters": [{"low": 0, "high": 1}]}, [1, 2],
                                 {"parameters": [{"name": "x", "low": 1, "high": 0}]}])
def test_from_dict_refuses_malformed(bad):
    with pytest.raises(ParameterError):
        ParameterSpace.from_dict(bad)


def test_describe_lists_every_parameter():
    text = analytic_space().describe()
    for name in analytic_space().names:
        assert name in text
    assert "reduced_shear" in text
