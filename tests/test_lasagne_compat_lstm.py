"""LSTMLayer with captioning.stack.lasagne_compat.lstm against a plain numpy LSTM,
and its incomings in Lasagne master's order.

Most graphs are compiled with the pure-Python linker (no C compilation, the
graphs are tiny); one test uses Theano's default mode to cover the C path.
"""
import captioning.stack  # noqa: F401  (before theano/lasagne)

import numpy as np
import pytest
import theano
import theano.tensor as T
import lasagne
from lasagne.init import Normal
from lasagne.layers import (DenseLayer, Gate, InputLayer, LSTMLayer,
                            get_all_layers, get_all_params, get_output)

from captioning.stack.lasagne_compat import lstm as lstm_backport

PY = theano.compile.Mode(linker="py", optimizer="fast_compile")
B, TIME, D, N = 2, 4, 3, 5  # batch, time steps, input features, units
GATES = ("ingate", "forgetgate", "cell", "outgate")


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_lstm(layer, x, mask=None, c0=None, h0=None):
    """Reference LSTM (float64): hidden states (batch, time, units) in input
    order, and the state after the last processed step.

    o_t = sigmoid(x W_xo + h_{t-1} W_ho + c_t * w_co + b_o), with the input
    and forget peepholes on c_{t-1}; padded steps (mask 0) keep the state.
    """
    p = {q.name: q.get_value().astype(np.float64) for q in layer.get_params()}

    def pre(gate, x_t, h):
        return (x_t @ p["W_in_to_" + gate] + h @ p["W_hid_to_" + gate]
                + p["b_" + gate])

    peep = layer.peepholes
    c = np.zeros((x.shape[0], N)) if c0 is None else c0
    h = np.zeros((x.shape[0], N)) if h0 is None else h0
    out = np.zeros(x.shape[:2] + (N,))
    steps = range(x.shape[1])
    for t in (reversed(steps) if layer.backwards else steps):
        i = sigmoid(pre("ingate", x[:, t], h)
                    + (c * p["W_cell_to_ingate"] if peep else 0))
        f = sigmoid(pre("forgetgate", x[:, t], h)
                    + (c * p["W_cell_to_forgetgate"] if peep else 0))
        c_new = f * c + i * np.tanh(pre("cell", x[:, t], h))
        o = sigmoid(pre("outgate", x[:, t], h)
                    + (c_new * p["W_cell_to_outgate"] if peep else 0))
        h_new = o * np.tanh(c_new)
        if mask is not None:
            m = mask[:, t, None]
            c_new, h_new = m * c_new + (1 - m) * c, m * h_new + (1 - m) * h
        c, h = c_new, h_new
        out[:, t] = h
    return out, h


def big_gate():
    # Large weights so that every term (e.g. the peepholes) matters.
    return Gate(W_in=Normal(0.8), W_hid=Normal(0.8), W_cell=Normal(1.5),
                b=Normal(0.5))


def make_lstm(incoming, mask_input=None, **kwargs):
    lasagne.random.set_rng(np.random.RandomState(42))
    return LSTMLayer(incoming, N, ingate=big_gate(), forgetgate=big_gate(),
                     cell=Gate(W_in=Normal(0.8), W_hid=Normal(0.8),
                               W_cell=None, b=Normal(0.5),
                               nonlinearity=lasagne.nonlinearities.tanh),
                     outgate=big_gate(), mask_input=mask_input, **kwargs)


def data(seed=0, batch=B, time=TIME):
    rng = np.random.RandomState(seed)
    x = rng.randn(batch, time, D).astype("float32")
    mask = np.ones((batch, time), "float32")
    mask[0, time - 1:] = 0  # sequence 0 is one step shorter
    mask[1, 1] = 0          # a hole: the state must be carried over
    return x, mask


@pytest.mark.parametrize("peepholes, use_mask, backwards, precompute, unroll", [
    (True, False, False, True, False),
    (True, True, False, True, False),
    (True, True, True, True, False),
    (False, True, False, True, False),
    (True, True, False, False, False),
    (True, True, True, True, True),
])
def test_forward_matches_numpy(peepholes, use_mask, backwards, precompute,
                               unroll):
    x, mask = data()
    l_in = InputLayer((None, TIME if unroll else None, D))
    l_mask = InputLayer((None, None)) if use_mask else None
    layer = make_lstm(l_in, l_mask, peepholes=peepholes, backwards=backwards,
                      precompute_input=precompute, unroll_scan=unroll)
    assert layer.output_shape == (None, TIME if unroll else None, N)
    inputs = [l_in.input_var] + ([l_mask.input_var] if use_mask else [])
    f = theano.function(inputs, get_output(layer), mode=PY)
    got = f(x, mask) if use_mask else f(x)
    expected, _ = numpy_lstm(layer, x, mask if use_mask else None)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_forward_and_gradient_in_default_mode():
    # Theano's usual (C) mode, as in the notebook; gradient vs. central
    # differences of the numpy reference.
    x, mask = data()
    l_in, l_mask = InputLayer((None, None, D)), InputLayer((None, None))
    layer = make_lstm(l_in, l_mask)
    out = get_output(layer)
    weights = np.random.RandomState(1).randn(B, TIME, N)
    loss = (out * weights.astype("float32")).sum()
    f = theano.function([l_in.input_var, l_mask.input_var],
                        [out, theano.grad(loss, l_in.input_var)])
    got, grad = f(x, mask)
    np.testing.assert_allclose(got, numpy_lstm(layer, x, mask)[0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        grad, numeric_grad(lambda v: (numpy_lstm(layer, v, mask)[0]
                                      * weights).sum(), x),
        rtol=1e-4, atol=1e-5)


def numeric_grad(fun, x, eps=1e-5):
    x = x.astype(np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        grad[idx] = (fun(x + step) - fun(x - step)) / (2 * eps)
    return grad


@pytest.mark.parametrize("backwards", [False, True])
def test_only_return_final(backwards):
    x, mask = data()
    l_in, l_mask = InputLayer((None, None, D)), InputLayer((None, None))
    layer = make_lstm(l_in, l_mask, backwards=backwards,
                      only_return_final=True)
    assert layer.output_shape == (None, N)
    f = theano.function([l_in.input_var, l_mask.input_var],
                        get_output(layer), mode=PY)
    all_h, final = numpy_lstm(layer, x, mask)
    # Forwards, the last processed step is the last one kept by the mask;
    # backwards it is the first time step.
    if backwards:
        np.testing.assert_allclose(final, all_h[:, 0])
    else:
        np.testing.assert_allclose(final, all_h[:, -1])
    np.testing.assert_allclose(f(x, mask), final, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("init_layers", [("cell_init",), ("hid_init",),
                                         ("cell_init", "hid_init")])
def test_layer_as_initial_state(init_layers):
    x, mask = data()
    rng = np.random.RandomState(3)
    img = rng.randn(B, 7).astype("float32")
    l_in, l_mask = InputLayer((None, None, D)), InputLayer((None, None))
    l_img = InputLayer((None, 7))
    # hid_init through a tanh (like the seminar's image features), cell_init
    # linear.
    act = {"hid_init": (lasagne.nonlinearities.tanh, np.tanh),
           "cell_init": (None, lambda v: v)}
    dense = {name: DenseLayer(l_img, N, W=rng.randn(7, N).astype("float32"),
                              nonlinearity=act[name][0])
             for name in init_layers}

    def dense_np(name):
        layer = dense[name]
        return act[name][1](img.astype(np.float64) @ layer.W.get_value()
                            + layer.b.get_value())

    # learn_init=True: must still create no parameter for a Layer init.
    layer = make_lstm(l_in, l_mask, learn_init=True, **dense)
    names = {p.name for p in layer.get_params()}
    for name in init_layers:
        assert name not in names
        # The init layer's parameters are reached through the graph.
        assert dense[name].W in get_all_params(layer, trainable=True)

    out = get_output(layer)
    weights = rng.randn(B, TIME, N)
    loss = (out * weights.astype("float32")).sum()
    params = [dense[name].W for name in init_layers]
    f = theano.function([l_in.input_var, l_mask.input_var, l_img.input_var],
                        [out] + theano.grad(loss, params), mode=PY)
    got, *grads = f(x, mask, img)

    def reference():
        states = {name: dense_np(name) for name in init_layers}
        return numpy_lstm(layer, x, mask, c0=states.get("cell_init"),
                          h0=states.get("hid_init"))[0]

    np.testing.assert_allclose(got, reference(), rtol=1e-5, atol=1e-6)
    for name, grad in zip(init_layers, grads):
        # The gradient reaches the init layer's W: central differences.
        W0 = dense[name].W.get_value().astype(np.float64)

        def loss_at(W, name=name):
            dense[name].W.set_value(W.astype("float32"))
            try:
                return (reference() * weights).sum()
            finally:
                dense[name].W.set_value(W0.astype("float32"))
        assert np.abs(grad).max() > 1e-3  # gradients do flow
        np.testing.assert_allclose(grad, numeric_grad(loss_at, W0, eps=1e-3),
                                   rtol=1e-2, atol=1e-3)


def two_init_layers():
    """An LSTM with a mask and both initial states from Dense layers of
    different input widths (2 for hid_init, 3 for cell_init), so that a swap
    shows in the shapes."""
    l_in, l_mask = InputLayer((None, None, D)), InputLayer((None, None))
    l_for_hid, l_for_cell = InputLayer((None, 2)), InputLayer((None, 3))
    hid, cell = DenseLayer(l_for_hid, N), DenseLayer(l_for_cell, N)
    layer = make_lstm(l_in, l_mask, hid_init=hid, cell_init=cell)
    return layer, (l_in, l_mask, l_for_hid, hid, l_for_cell, cell)


def test_init_layers_come_in_lasagne_masters_order():
    # Lasagne master's LSTMLayer appends the hid_init layer, then the
    # cell_init layer, after the input and the mask; its own test
    # (test_lstm_nparams_hid_init_layer) expects get_all_layers to give
    # [input, hid's input, hid's Dense, cell's input, cell's Dense, lstm].
    layer, (l_in, l_mask, l_for_hid, hid, l_for_cell, cell) = two_init_layers()
    assert layer.input_layers == [l_in, l_mask, hid, cell]
    assert (layer.mask_incoming_index, layer.hid_init_incoming_index,
            layer.cell_init_incoming_index) == (1, 2, 3)
    assert get_all_layers(layer) == [l_in, l_mask, l_for_hid, hid,
                                     l_for_cell, cell, layer]
    shapes = [p.get_value().shape for p in get_all_params(layer)]
    assert shapes[:4] == [(2, N), (N,), (3, N), (N,)]


def test_values_saved_in_masters_order_load_onto_the_right_layers():
    # get_all_param_values under master lists hid's Dense before cell's;
    # both Dense layers here see the same 7 features, so a swapped order
    # would load without any error.
    l_in, l_img = InputLayer((None, None, D)), InputLayer((None, 7))
    hid, cell = DenseLayer(l_img, N), DenseLayer(l_img, N)
    layer = make_lstm(l_in, hid_init=hid, cell_init=cell)
    own = [p.get_value() for p in layer.get_params()]
    rng = np.random.RandomState(6)
    saved = [rng.randn(7, N), rng.randn(N), rng.randn(7, N), rng.randn(N)]
    saved = [v.astype("float32") for v in saved] + own
    lasagne.layers.set_all_param_values(layer, saved)
    for param, value in zip([hid.W, hid.b, cell.W, cell.b],
                            saved[:4]):
        np.testing.assert_array_equal(param.get_value(), value)


@pytest.mark.parametrize("learn_init", [False, True])
def test_array_initial_state_and_learn_init(learn_init):
    x, _ = data()
    rng = np.random.RandomState(4)
    c0, h0 = (rng.randn(1, N).astype("float32") for _ in range(2))
    l_in = InputLayer((None, None, D))
    layer = make_lstm(l_in, cell_init=c0, hid_init=h0, learn_init=learn_init)
    trainable = {p.name for p in layer.get_params(trainable=True)}
    assert ({"cell_init", "hid_init"} <= trainable) == learn_init
    assert {"cell_init", "hid_init"} <= {p.name for p in layer.get_params()}
    f = theano.function([l_in.input_var], get_output(layer), mode=PY)
    expected, _ = numpy_lstm(layer, x, c0=np.repeat(c0, B, 0),
                             h0=np.repeat(h0, B, 0))
    np.testing.assert_allclose(f(x), expected, rtol=1e-5, atol=1e-6)


def test_tensor_initial_state_as_in_lasagne_01():
    # A (batch, num_units) Theano expression is used as-is (0.1 behaviour).
    x, _ = data()
    h0 = np.random.RandomState(5).randn(B, N).astype("float32")
    h0_var = T.matrix()
    l_in = InputLayer((None, None, D))
    layer = make_lstm(l_in, hid_init=h0_var, learn_init=True)
    assert "hid_init" not in {p.name for p in layer.get_params()}
    f = theano.function([l_in.input_var, h0_var], get_output(layer), mode=PY)
    np.testing.assert_allclose(f(x, h0), numpy_lstm(layer, x, h0=h0)[0],
                               rtol=1e-5, atol=1e-6)


def clip_setup(grad_clipping):
    """Output and d(100 * sum of outputs)/d(input) for a fixed input."""
    x, mask = data()
    l_in, l_mask = InputLayer((None, None, D)), InputLayer((None, None))
    layer = make_lstm(l_in, l_mask, grad_clipping=grad_clipping)
    out = get_output(layer)
    f = theano.function([l_in.input_var, l_mask.input_var],
                        [out, theano.grad(100 * out.sum(), l_in.input_var)],
                        mode=PY)
    return layer, x, mask, f(x, mask)


def test_grad_clipping_bounds_backward_messages_only():
    clip = 1e-3
    layer, x, mask, (out, grad) = clip_setup(clip)
    _, _, _, (out_free, grad_free) = clip_setup(0)
    # Forward pass unchanged.
    np.testing.assert_allclose(out, numpy_lstm(layer, x, mask)[0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, out_free)
    # Each gate pre-activation receives a message in [-clip, clip], so
    # |dL/dx[b, t, k]| <= clip * sum_j |W_in_stacked[k, j]|.
    W_in = np.concatenate([getattr(layer, "W_in_to_" + g).get_value()
                           for g in GATES], axis=1)
    bound = clip * np.abs(W_in).sum(axis=1) * (1 + 1e-5)
    assert np.all(np.abs(grad) <= bound)
    assert np.any(np.abs(grad_free) > 10 * bound)  # the bound does bite
    assert np.abs(grad).max() > 0  # clipped, not zeroed


@pytest.mark.parametrize("off", [0, False])
def test_grad_clipping_zero_means_no_clipping(off):
    layer, x, mask, (out, grad) = clip_setup(off)
    np.testing.assert_allclose(
        grad, numeric_grad(lambda v: 100 * numpy_lstm(layer, v, mask)[0].sum(),
                           x), rtol=1e-4, atol=1e-3)


def test_parameter_names_and_shapes_as_in_lasagne():
    layer = make_lstm(InputLayer((None, None, D)))
    shapes = {p.name: p.get_value().shape for p in layer.get_params()}
    expected = {"cell_init": (1, N), "hid_init": (1, N)}
    for g in GATES:
        expected.update({"W_in_to_" + g: (D, N), "W_hid_to_" + g: (N, N),
                         "b_" + g: (N,)})
        if g != "cell":
            expected["W_cell_to_" + g] = (N,)
    assert shapes == expected
    assert {p.name for p in layer.get_params(trainable=True)} == \
        set(expected) - {"cell_init", "hid_init"}


def test_init_layer_with_wrong_shape_is_rejected():
    with pytest.raises(ValueError):
        make_lstm(InputLayer((None, None, D)), cell_init=InputLayer((None, 3)))


def test_every_import_path_gives_the_fixed_class():
    import lasagne.layers.recurrent as recurrent
    namespace = {}
    exec("from lasagne.layers import *", namespace)
    assert namespace["LSTMLayer"] is recurrent.LSTMLayer is LSTMLayer
    before = LSTMLayer.__init__
    lstm_backport.backport()  # a second call changes nothing
    assert LSTMLayer.__init__ is before
    # No infinite super() recursion, and the keyword exists.
    assert make_lstm(InputLayer((1, 2, D)),
                     only_return_final=True).output_shape == (1, N)
