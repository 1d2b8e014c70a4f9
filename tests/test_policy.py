"""Architecture specs and the policy networks they build."""

from __future__ import annotations

import numpy as np
import pytest

from hades.errors import SpecError
from hades.policy import ACTIVATIONS, INITS, PolicySpec, format_arch, make_network, parse_arch


@pytest.mark.parametrize("text, hidden, activation, init, canonical", [
    ("512,512:tanh", (512, 512), "tanh", "orthogonal", "512,512:tanh:orthogonal"),
    ("2x64:relu", (64, 64), "relu", "orthogonal", "64,64:relu:orthogonal"),
    ("3x256:relu:lecun", (256, 256, 256), "relu", "lecun", "256,256,256:relu:lecun"),
    ("64", (64,), "tanh", "orthogonal", "64:tanh:orthogonal"),
    ("128,32,8:gelu:he", (128, 32, 8), "gelu", "he", "128,32,8:gelu:he"),
    ("2X64:ReLU:Glorot", (64, 64), "relu", "glorot", "64,64:relu:glorot"),
    (" 512, 512:tanh ", (512, 512), "tanh", "orthogonal", "512,512:tanh:orthogonal"),
])
def test_parse_and_format_roundtrip(text, hidden, activation, init, canonical):
    spec = parse_arch(text)
    assert spec == PolicySpec(hidden, activation, init)
    assert format_arch(spec) == canonical
    assert parse_arch(format_arch(spec)) == spec
    assert PolicySpec.from_dict(spec.to_dict()) == spec


def test_default_spec_is_the_papers():
    spec = PolicySpec()
    assert (spec.hidden, spec.activation, spec.init) == ((512, 512), "tanh", "orthogonal")
    assert parse_arch("2x512") == spec
    assert PolicySpec.from_dict({"hidden": [512, 512]}) == spec


@pytest.mark.parametrize("text, fragment", [
    ("2x", "hidden layers must look like"),
    ("512,,512", "hidden layers must look like"),
    ("wide", "hidden layers must look like"),
    ("-64", "hidden layers must look like"),
    ("64.5", "hidden layers must look like"),
    ("512:swish", "activation must be one of"),
    ("512:tanh:xavier", "init must be one of"),
    ("512:tanh:orthogonal:extra", "too many ':' parts"),
    ("2x0:relu", "hidden widths must be positive"),
    ("64,0", "hidden widths must be positive"),
])
def test_bad_specs_raise_spec_error(text, fragment):
    with pytest.raises(SpecError) as info:
        parse_arch(text)
    message = str(info.value)
    assert repr(text) in message and fragment in message and "\n" not in message
    assert isinstance(info.value, ValueError)


def test_policy_spec_validates_itself():
    with pytest.raises(ValueError, match="activation"):
        PolicySpec((8,), "softplus")
    with pytest.raises(ValueError, match="init"):
        PolicySpec((8,), "tanh", "zeros")
    with pytest.raises(ValueError, match="positive"):
        PolicySpec((8, -1))


def _init(spec: PolicySpec, obs_dim: int, action_dim: int, discrete: bool, seed: int = 0):
    import jax
    import jax.numpy as jnp

    network = make_network(spec, action_dim, discrete)
    return network, jax.jit(network.init)(jax.random.PRNGKey(seed), jnp.zeros((obs_dim,), jnp.float32))


def test_continuous_head_outputs_mean_and_log_std():
    import jax

    network, params = _init(PolicySpec((16, 16)), 11, 3, discrete=False)
    layers = params["params"]
    assert sorted(layers) == ["Dense_0", "Dense_1", "Dense_2", "log_std"]
    assert layers["Dense_0"]["kernel"].shape == (11, 16) and layers["Dense_2"]["kernel"].shape == (16, 3)
    np.testing.assert_array_equal(layers["log_std"], np.zeros(3))
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 11))
    mean, log_std = network.apply(params, obs)
    assert mean.shape == (5, 3) and log_std.shape == (5, 3)
    np.testing.assert_array_equal(log_std, np.zeros((5, 3)))
    assert np.isfinite(np.asarray(mean)).all() and np.abs(np.asarray(mean)).max() > 0
    # one observation works too
    single_mean, single_log_std = network.apply(params, obs[0])
    assert single_mean.shape == (3,) and single_log_std.shape == (3,)
    np.testing.assert_allclose(single_mean, mean[0], rtol=1e-5, atol=1e-6)


def test_discrete_head_outputs_logits():
    import jax

    network, params = _init(PolicySpec((16, 16), "relu"), 400, 3, discrete=True)
    assert "log_std" not in params["params"]
    logits = network.apply(params, jax.random.uniform(jax.random.PRNGKey(1), (7, 400)))
    assert logits.shape == (7, 3) and np.isfinite(np.asarray(logits)).all()


def test_orthogonal_init_gains_and_zero_biases():
    _, params = _init(PolicySpec((32, 32)), 11, 3, discrete=False)
    layers = params["params"]
    for name in ("Dense_0", "Dense_1", "Dense_2"):
        np.testing.assert_array_equal(layers[name]["bias"], 0)
    first = np.asarray(layers["Dense_0"]["kernel"])  # 11 x 32: orthogonal rows, gain sqrt(2)
    np.testing.assert_allclose(first @ first.T, 2 * np.eye(11), atol=1e-4)
    hidden = np.asarray(layers["Dense_1"]["kernel"])  # 32 x 32
    np.testing.assert_allclose(hidden.T @ hidden, 2 * np.eye(32), atol=1e-4)
    head = np.asarray(layers["Dense_2"]["kernel"])  # 32 x 3: orthogonal columns, gain 0.01
    np.testing.assert_allclose(head.T @ head, 1e-4 * np.eye(3), atol=1e-8)
    assert np.abs(head).max() <= 0.01 + 1e-6


def test_orthogonal_head_makes_initial_actions_near_zero():
    import jax

    network, params = _init(PolicySpec((64, 64)), 11, 3, discrete=False)
    mean, _ = network.apply(params, jax.random.normal(jax.random.PRNGKey(2), (100, 11)))
    assert np.abs(np.asarray(mean)).max() < 0.1
    # other initialisers do not shrink the head
    network, params = _init(PolicySpec((64, 64), "tanh", "lecun"), 11, 3, discrete=False)
    mean, _ = network.apply(params, jax.random.normal(jax.random.PRNGKey(2), (100, 11)))
    assert np.abs(np.asarray(mean)).max() > 0.1


def test_seeds_give_different_inits():
    _, first = _init(PolicySpec((16,)), 11, 3, discrete=False, seed=0)
    _, again = _init(PolicySpec((16,)), 11, 3, discrete=False, seed=0)
    _, other = _init(PolicySpec((16,)), 11, 3, discrete=False, seed=1)
    np.testing.assert_array_equal(first["params"]["Dense_0"]["kernel"], again["params"]["Dense_0"]["kernel"])
    assert not np.allclose(first["params"]["Dense_0"]["kernel"], other["params"]["Dense_0"]["kernel"])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_builds(activation):
    import jax.numpy as jnp

    network, params = _init(PolicySpec((8,), activation), 4, 2, discrete=True)
    assert network.apply(params, jnp.ones((3, 4))).shape == (3, 2)


@pytest.mark.parametrize("init", INITS)
def test_every_init_builds(init):
    import jax.numpy as jnp

    network, params = _init(PolicySpec((8, 8), "relu", init), 4, 2, discrete=False)
    mean, log_std = network.apply(params, jnp.ones((3, 4)))
    assert mean.shape == (3, 2) and log_std.shape == (3, 2)
