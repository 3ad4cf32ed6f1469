"""pretrained_lenet: GoogLeNet vs ONNX Runtime, preprocess, load_weights.

The reference is the BVLC GoogLeNet graph shipped in the `onnx` package's
backend tests (light_inception_v1.onnx). Its weights are ConstantOfShape
placeholders and some biases; the test replaces all of them with the same
random weights it puts into the Lasagne model.

That graph was converted from Caffe2 at ONNX opset 9, which has no
``ceil_mode``: its stride-2 max pools round down (112 -> 55) and an
end-padded 7x7 average pool makes up for it at the end. BVLC Caffe rounds
up (112 -> 56, ..., 7x7 before pool5). The test restores Caffe's pooling in
the ONNX graph: one row/column of end padding on each stride-2 max pool is
exactly ceil mode here (the padding never wins a max), and pool5 gets no
padding. ``test_onnx_graph_rounds_down`` pins that reading of the graph.
"""
import captioning.stack  # noqa: F401  (Theano flags and the backport first)

import os
import pickle
import re

import numpy as np
import pytest
import theano

import lasagne
import pretrained_lenet
from pretrained_lenet import (MEAN_VALUES, UnsafePickleError, build_model,
                              load_weights, preprocess)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

ONNX_PATH = os.path.join(os.path.dirname(onnx.__file__), "backend", "test",
                         "data", "light", "light_inception_v1.onnx")


# ---------------------------------------------------------------- ONNX check

def load_onnx():
    if not os.path.exists(ONNX_PATH):
        pytest.skip("onnx package without light_inception_v1.onnx")
    return onnx.load(ONNX_PATH)


def caffe_ceil_pools(graph):
    """Give the graph Caffe's pooling (see module docstring)."""
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "MaxPool" and list(attrs["strides"].ints) == [2, 2]:
            assert list(attrs["pads"].ints) == [0, 0, 0, 0]
            attrs["pads"].ints[:] = [0, 0, 1, 1]
        elif node.op_type == "AveragePool":
            attrs["pads"].ints[:] = [0, 0, 0, 0]


def random_weights(net, rng):
    """He-scaled random weights (ReLU keeps activations O(1)), keyed by the
    Caffe layer name, in the Lasagne layouts."""
    weights = {}
    for name, layer in net.items():
        if isinstance(layer, lasagne.layers.Conv2DLayer):
            shape = layer.W.get_value().shape
            fan_in = np.prod(shape[1:])
            W = rng.randn(*shape) * np.sqrt(2.0 / fan_in)
            b = rng.randn(shape[0]) * 0.1
            weights[name] = (W.astype("float32"), b.astype("float32"))
    return weights


def onnx_with_weights(model, net, weights):
    """Put `weights` into the ONNX graph as initializers (by Caffe name,
    checking every shape), and expose every node output."""
    graph = model.graph
    placeholders = {n.output[0]: n for n in graph.node
                    if n.op_type == "ConstantOfShape"}
    shapes = {i.name: tuple(numpy_helper.to_array(i))
              for i in graph.initializer if i.name.endswith("__SHAPE")}
    values = {}
    for name, (W, b) in weights.items():
        values[name + "_w_0"] = W
        values[name + "_b_0"] = b
    used = set()
    for tensor, value in values.items():
        if tensor in placeholders:
            shape = shapes[tensor + "__SHAPE"]
        else:
            shape = tuple(d.dim_value for i in graph.input if i.name == tensor
                          for d in i.type.tensor_type.shape.dim)
        assert tuple(shape) == value.shape, tensor
        used.add(tensor)
    param_tensors = {i for n in graph.node if n.op_type == "Conv"
                     for i in n.input[1:]} | \
        {"loss3/classifier_w_0", "loss3/classifier_b_0"}
    assert param_tensors == used, "every ONNX weight gets a Lasagne one"

    keep_nodes = [n for n in graph.node if n.op_type != "ConstantOfShape"]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    replaced = set(values) | {t + "__SHAPE" for t in placeholders}
    keep_inits = [i for i in graph.initializer if i.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    keep_inputs = [i for i in graph.input if i.name not in replaced]
    del graph.input[:]
    graph.input.extend(keep_inputs)
    for tensor, value in values.items():
        graph.initializer.append(numpy_helper.from_array(value, tensor))
    existing = {o.name for o in graph.output}
    for node in graph.node:
        for out in node.output[:1]:       # not Dropout's (bool) mask
            if out not in existing:
                graph.output.append(helper.make_tensor_value_info(
                    out, onnx.TensorProto.FLOAT, None))
    return model


def map_onnx_to_layers(graph, net):
    """ONNX tensor name -> Caffe layer name whose Lasagne output it is,
    found by walking both graphs together from the input."""
    inputs_of = {}
    for name, layer in net.items():
        incoming = getattr(layer, "input_layers", None) or \
            [getattr(layer, "input_layer", None)]
        inputs_of[name] = tuple(incoming)
    layer_of = {"data_0": "input"}
    kinds = {"MaxPool": lasagne.layers.Pool2DLayer,
             "AveragePool": lasagne.layers.Pool2DLayer,
             "LRN": lasagne.layers.LocalResponseNormalization2DLayer,
             "Concat": lasagne.layers.ConcatLayer}
    for node in graph.node:
        op, out = node.op_type, node.output[0]
        if op == "Conv":
            name = node.input[1][:-len("_w_0")]
            assert inputs_of[name] == (net[layer_of[node.input[0]]],), name
            layer_of[out] = None               # before the ReLU
            conv_name = name
        elif op == "Relu":
            layer_of[out] = conv_name
        elif op in kinds:
            wanted = tuple(net[layer_of[i]] for i in node.input)
            matches = [n for n, l in net.items() if isinstance(l, kinds[op])
                       and inputs_of[n] == wanted]
            assert len(matches) == 1, (op, out, matches)
            layer_of[out] = matches[0]
        elif op == "Dropout":                  # identity at inference
            layer_of[out] = layer_of[node.input[0]]
        elif op == "Reshape":                  # flattening for Gemm
            layer_of[out] = None
        elif op == "Gemm":
            layer_of[out] = "loss3/classifier"
        elif op == "Softmax":
            layer_of[out] = "prob"
        else:
            raise AssertionError("unexpected ONNX op %s" % op)
    return {t: n for t, n in layer_of.items() if n is not None}


def test_onnx_graph_rounds_down():
    model = load_onnx()
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in inferred.graph.value_info}
    assert dims[pools[0].output[0]][2:] == [55, 55]   # Caffe: 56
    assert build_model()["pool1/3x3_s2"].output_shape[2:] == (56, 56)


@pytest.fixture(scope="module")
def compared():
    """Run both networks once on the same random input and weights."""
    rng = np.random.RandomState(42)
    net = build_model()
    weights = random_weights(net, rng)
    for name, (W, b) in weights.items():
        net[name].W.set_value(W)
        net[name].b.set_value(b)

    model = load_onnx()
    caffe_ceil_pools(model.graph)
    x = rng.randn(1, 3, 224, 224).astype("float32")
    # Classifier scaled so that the logits have unit scale: measure the
    # pool5 features with ONNX Runtime first (fast), then set its weights.
    cls_W = rng.randn(1024, 1000).astype("float32")
    cls_b = (rng.randn(1000) * 0.1).astype("float32")
    weights["loss3/classifier"] = (cls_W.T.reshape(1, 1, 1000, 1024), cls_b)
    model = onnx_with_weights(model, net, weights)
    mapping = map_onnx_to_layers(model.graph, net)
    pool5 = [t for t, n in mapping.items() if n == "pool5/7x7_s1"][0]
    sess = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    feats = sess.run([pool5], {"data_0": x})[0]
    scale = np.float32(1.0 / (np.sqrt(1024) * np.sqrt(np.mean(feats ** 2))))
    cls_W *= scale
    for init in model.graph.initializer:
        if init.name == "loss3/classifier_w_0":
            init.CopyFrom(numpy_helper.from_array(
                cls_W.T.reshape(1, 1, 1000, 1024), init.name))
    net["loss3/classifier"].W.set_value(cls_W)
    net["loss3/classifier"].b.set_value(cls_b)

    sess = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    del mapping["data_0"]                      # the input itself
    tensors = list(mapping)
    onnx_out = dict(zip(tensors, sess.run(tensors, {"data_0": x})))

    names = sorted(set(mapping.values()))
    input_var = net["input"].input_var
    outputs = lasagne.layers.get_output([net[n] for n in names],
                                        deterministic=True)
    fn = theano.function([input_var], outputs)
    lasagne_out = dict(zip(names, fn(x)))
    return net, mapping, onnx_out, lasagne_out


@pytest.mark.slow
def test_every_layer_shape_matches_onnx(compared):
    net, mapping, onnx_out, lasagne_out = compared
    assert set(mapping.values()) == set(net) - {"input"}
    for tensor, name in mapping.items():
        expected = onnx_out[tensor].shape
        assert lasagne_out[name].shape == expected, name
        assert (1,) + net[name].output_shape[1:] == expected, name


@pytest.mark.slow
def test_every_layer_value_matches_onnx(compared):
    net, mapping, onnx_out, lasagne_out = compared
    worst = 0.0
    for tensor, name in mapping.items():
        ref = onnx_out[tensor]
        scale = max(1.0, float(np.abs(ref).max()))
        diff = float(np.abs(lasagne_out[name] - ref).max()) / scale
        worst = max(worst, diff)
        assert diff < 1e-4, (name, diff)
    print("worst relative max abs diff over all layers: %.2e" % worst)


@pytest.mark.slow
def test_classifier_and_prob_match_onnx(compared):
    net, mapping, onnx_out, lasagne_out = compared
    for name in ("loss3/classifier", "prob"):
        tensor = [t for t, n in mapping.items() if n == name][-1]
        ref = onnx_out[tensor]
        diff = float(np.abs(lasagne_out[name] - ref).max())
        print("%s: max abs diff %.2e (output std %.3f, max %.3f)"
              % (name, diff, ref.std(), np.abs(ref).max()))
        assert diff < 1e-4
    logits = lasagne_out["loss3/classifier"]
    assert 0.3 < logits.std() < 3.0        # unit scale, not saturated


def test_param_order_is_recipe_order():
    net = build_model()
    params = lasagne.layers.get_all_params(net["prob"])
    owners = []
    for p in params:
        owners += [n for n, l in net.items()
                   if p in (getattr(l, "W", None), getattr(l, "b", None))]
    assert owners[:6] == ["conv1/7x7_s2"] * 2 + ["conv2/3x3_reduce"] * 2 + \
        ["conv2/3x3"] * 2
    branches = ["1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"]
    assert owners[6:18] == ["inception_3a/" + b for b in branches
                            for _ in range(2)]
    assert owners[-2:] == ["loss3/classifier"] * 2
    assert len(params) == 116


# ---------------------------------------------------------------- preprocess

@pytest.mark.parametrize("image", [
    np.full((300, 400, 3), 200, np.uint8),              # landscape RGB
    np.full((500, 250, 3), 200, np.uint8),              # portrait
    np.full((240, 240), 200, np.uint8),                 # grey
    np.full((240, 320, 1), 200, np.uint8),              # grey, channel axis
    np.full((10, 7, 3), 200, np.uint8),                 # tiny: scaled up
    np.full((1, 1, 3), 200, np.uint8),                  # one pixel
    np.full((230, 260, 4), 200, np.uint8),              # RGBA
    np.full((300, 300, 3), 200 / 255.0, np.float32),    # PNG from plt.imread
    np.full((300, 300, 4), 200 / 255.0, np.float64),    # RGBA float
])
def test_preprocess_shapes_and_values(image):
    out = preprocess(image)
    assert out.shape == (1, 3, 224, 224) and out.dtype == np.float32
    # A uniform 200 image becomes 200 - mean in every channel.
    expected = 200 - MEAN_VALUES.ravel()
    np.testing.assert_allclose(out[0].mean(axis=(1, 2)), expected, atol=1e-3)
    np.testing.assert_allclose(out[0].std(axis=(1, 2)), 0, atol=1e-3)


def test_preprocess_is_bgr_centre_crop():
    img = np.zeros((224, 448, 3), np.uint8)
    img[:, :, 0] = 255                        # pure red
    img[:, 112:336, 2] = 255                  # blue in the central square
    out = preprocess(img)[0] + MEAN_VALUES
    np.testing.assert_allclose(out[0], 255, atol=1e-3)   # B (centre only)
    np.testing.assert_allclose(out[1], 0, atol=1e-3)     # G
    np.testing.assert_allclose(out[2], 255, atol=1e-3)   # R
    # The seminar's deprocessing line gives back the RGB crop.
    rgb = np.transpose(out[::-1], [1, 2, 0]).astype("uint8")
    np.testing.assert_array_equal(rgb, img[:, 112:336])


def test_preprocess_rejects_bad_input():
    with pytest.raises(ValueError):
        preprocess(np.full((50, 50, 3), 200.0))          # float beyond [0, 1]
    with pytest.raises(ValueError):
        preprocess(np.zeros((5, 5, 2), np.uint8))
    with pytest.raises(ValueError):
        preprocess(np.zeros((5,), np.uint8))


# ---------------------------------------------------------------- load_weights

@pytest.fixture(scope="module")
def small_net():
    net = build_model()
    params = lasagne.layers.get_all_params(net["prob"])
    return net, [p.get_value().shape for p in params]


def test_load_weights_tiny_protocol2_pickle(tmp_path, small_net):
    net, shapes = small_net
    rng = np.random.RandomState(0)
    values = [rng.randn(*s).astype("float32") * 0 + i
              for i, s in enumerate(shapes)]
    path = tmp_path / "blvc_googlenet.pkl"
    with open(path, "wb") as f:
        pickle.dump({"param values": values,
                     "synset words": ["n01440764 tench", "goldfish"]},
                    f, protocol=2)
    names = load_weights(net, str(path))
    assert names == ["n01440764 tench", "goldfish"]
    got = lasagne.layers.get_all_param_values(net["prob"])
    for i, value in enumerate(got):
        assert value.dtype == theano.config.floatX
        assert np.all(value == i)


def test_load_weights_rejects_wrong_shapes(tmp_path, small_net):
    net, shapes = small_net
    before = net["conv1/7x7_s2"].W.get_value()
    values = [np.zeros(s, "float32") for s in shapes]
    values[-1] = np.zeros(3, "float32")
    path = tmp_path / "bad.pkl"
    with open(path, "wb") as f:
        pickle.dump({"param values": values}, f, protocol=2)
    with pytest.raises(ValueError, match="parameter 115"):
        load_weights(net, str(path))
    np.testing.assert_array_equal(net["conv1/7x7_s2"].W.get_value(), before)


class Payload:
    """Unpickling this would call os.system."""

    def __reduce__(self):
        return (os.system, ("touch %s" % Payload.marker,))


def test_load_weights_refuses_malicious_pickle(tmp_path, small_net):
    net, _ = small_net
    marker = tmp_path / "pwned"
    Payload.marker = str(marker)
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"param values": [Payload()]}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match="system"):
        load_weights(net, str(path))
    assert not marker.exists()


def test_load_weights_missing_file_says_where_to_get_it(tmp_path, small_net):
    net, _ = small_net
    with pytest.raises(FileNotFoundError, match="data.tar.gz"):
        load_weights(net, str(tmp_path / "blvc_googlenet.pkl"))


def test_module_names():
    for name in ("build_model", "preprocess", "MEAN_VALUES", "load_weights",
                 "build_inception_module"):
        assert hasattr(pretrained_lenet, name)
    np.testing.assert_array_equal(MEAN_VALUES.ravel(), [104, 117, 123])


# Globals outside the weights pickle's allow-list (numpy arrays and scalars,
# plain data): a command and what the .pth use admits.
@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("torch._utils", "_rebuild_tensor_v2"),
    ("collections", "OrderedDict")])
def test_load_weights_refuses_globals_of_other_uses(tmp_path, small_net,
                                                    module, name):
    net, _ = small_net
    path = tmp_path / "other.pkl"
    path.write_bytes(b"c%s\n%s\n(S'true'\ntR." % (module.encode(), name.encode()))
    with pytest.raises(UnsafePickleError,
                       match=re.escape("refusing to load %s.%s" % (module, name))):
        load_weights(net, str(path))


def test_load_weights_admits_numpy_scalars(tmp_path, small_net):
    # Python 2 numpy pickles may hold scalars (numpy.core.multiarray.scalar),
    # which the caption pickle's allow-list refuses.
    net, shapes = small_net
    values = [np.full(s, np.float32(i)) for i, s in enumerate(shapes)]
    path = tmp_path / "scalars.pkl"
    with open(path, "wb") as f:
        pickle.dump({"param values": values, "scale": np.float64(0.5)}, f,
                    protocol=2)
    load_weights(net, str(path))
    assert lasagne.layers.get_all_param_values(net["prob"])[3].flat[0] == 3
