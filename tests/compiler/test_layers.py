"""Every layer type: output_shape (plain Python) equals the built module's real output, and parameter
counts and shapes equal those of the PyTorch modules built by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from pydantic import TypeAdapter

from nnspec.compiler.base import type_tag, union_members
from nnspec.compiler.errors import ShapeError
from nnspec.compiler.layers import LAYER_CLASSES, InitSpec, LayerSpec, build_chain, chain_shapes

LAYER = TypeAdapter(LayerSpec)


def _lin(i, o, bias=True):
    return nn.Linear(i, o, bias=bias)


# (id, layer spec, input shapes, reference(in_shape) -> the module(s) PyTorch would need, or None)
CASES = [
    ("linear", {"type": "linear", "out_features": 5}, [(7,), (3, 7)], lambda s: _lin(s[-1], 5)),
    ("linear_no_bias", {"type": "linear", "out_features": 2, "bias": False}, [(9,)], lambda s: _lin(9, 2, False)),
    ("conv1d", {"type": "conv1d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2, "groups": 2},
     [(4, 20), (4, 9), (4, 5)], lambda s: nn.Conv1d(s[0], 6, 3, 2, 1, 2, 2)),
    ("conv2d", {"type": "conv2d", "out_channels": 8, "kernel_size": [3, 5], "stride": [2, 1], "padding": [1, 2], "dilation": 2},
     [(3, 16, 16), (3, 9, 13), (3, 5, 9)], lambda s: nn.Conv2d(s[0], 8, (3, 5), (2, 1), (1, 2), 2)),
    ("conv2d_groups_no_bias", {"type": "conv2d", "out_channels": 4, "kernel_size": 1, "groups": 4, "bias": False},
     [(4, 3, 3)], lambda s: nn.Conv2d(4, 4, 1, groups=4, bias=False)),
    ("max_pool1d", {"type": "max_pool1d", "kernel_size": 3, "stride": 2, "padding": 1}, [(3, 10), (2, 7), (1, 2)], None),
    ("avg_pool1d", {"type": "avg_pool1d", "kernel_size": 4}, [(3, 10), (2, 4)], None),
    ("max_pool2d", {"type": "max_pool2d", "kernel_size": 3, "stride": 2, "padding": 1}, [(4, 9, 9), (4, 8, 7), (1, 2, 2)], None),
    ("max_pool2d_pairs", {"type": "max_pool2d", "kernel_size": [2, 3], "stride": [1, 2]}, [(2, 5, 9), (2, 2, 3)], None),
    ("avg_pool2d", {"type": "avg_pool2d", "kernel_size": 2, "padding": 1}, [(3, 8, 8), (3, 5, 7)], None),
    ("global_avg_pool", {"type": "global_avg_pool"}, [(4, 10), (4, 5, 6)], None),
    ("flatten", {"type": "flatten"}, [(3, 4, 5), (7,), (2, 9)], None),
    ("reshape", {"type": "reshape", "shape": [2, 4, 8]}, [(64,), (8, 8), (4, 4, 4)], None),
    ("dropout", {"type": "dropout", "p": 0.3}, [(5,), (2, 5), (2, 3, 3)], None),
    ("dropout1d", {"type": "dropout1d", "p": 0.2}, [(4, 10)], None),
    ("dropout2d", {"type": "dropout2d"}, [(3, 5, 5)], None),
    ("batch_norm_1d_features", {"type": "batch_norm"}, [(10,)], lambda s: nn.BatchNorm1d(10)),
    ("batch_norm_1d_channels", {"type": "batch_norm", "momentum": 0.2, "eps": 0.001}, [(4, 12)], lambda s: nn.BatchNorm1d(4)),
    ("batch_norm_2d", {"type": "batch_norm"}, [(3, 5, 5), (6, 2, 7)], lambda s: nn.BatchNorm2d(s[0])),
    ("layer_norm", {"type": "layer_norm"}, [(10,), (4, 12)], lambda s: nn.LayerNorm(s[-1])),
    ("relu", {"type": "relu"}, [(5,), (2, 3, 3)], None),
    ("leaky_relu", {"type": "leaky_relu", "negative_slope": 0.2}, [(5,)], None),
    ("elu", {"type": "elu", "alpha": 0.5}, [(5,)], None),
    ("gelu", {"type": "gelu"}, [(5,)], None),
    ("silu", {"type": "silu"}, [(2, 5)], None),
    ("sigmoid", {"type": "sigmoid"}, [(5,)], None),
    ("tanh", {"type": "tanh"}, [(5,)], None),
    ("gru_bidirectional_2_layers_last", {"type": "gru", "hidden_size": 6, "num_layers": 2, "bidirectional": True, "dropout": 0.1},
     [(7, 5), (1, 5)], lambda s: nn.GRU(5, 6, num_layers=2, bidirectional=True)),
    ("gru_sequence", {"type": "gru", "hidden_size": 4, "output": "sequence"}, [(7, 3)], lambda s: nn.GRU(3, 4)),
    ("lstm_last", {"type": "lstm", "hidden_size": 8}, [(6, 4)], lambda s: nn.LSTM(4, 8)),
    ("lstm_bidirectional_sequence", {"type": "lstm", "hidden_size": 3, "num_layers": 2, "bidirectional": True, "output": "sequence"},
     [(5, 2)], lambda s: nn.LSTM(2, 3, num_layers=2, bidirectional=True)),
    ("rnn_relu_2_layers", {"type": "rnn", "hidden_size": 5, "num_layers": 2, "nonlinearity": "relu"}, [(4, 3)],
     lambda s: nn.RNN(3, 5, num_layers=2)),
    ("rnn_bidirectional_sequence", {"type": "rnn", "hidden_size": 5, "bidirectional": True, "output": "sequence"}, [(4, 3)],
     lambda s: nn.RNN(3, 5, bidirectional=True)),
    ("sequential_repeat", {"type": "sequential", "repeat": 3, "layers": [{"type": "linear", "out_features": 8}, {"type": "relu"}]},
     [(8,), (5, 8)], lambda s: [_lin(8, 8)] * 3),
    ("sequential_repeat_shrinking", {"type": "sequential", "repeat": 2,
                                     "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1}]},
     [(3, 16, 16), (3, 5, 5)], lambda s: [nn.Conv2d(s[0], 8, 3), nn.Conv2d(8, 8, 3)]),
    ("sequential_once", {"type": "sequential", "layers": [{"type": "linear", "out_features": 4}]}, [(6,)], lambda s: _lin(6, 4)),
    ("residual_identity", {"type": "residual", "layers": [{"type": "linear", "out_features": 8}, {"type": "relu"}]},
     [(8,), (3, 8)], lambda s: _lin(8, 8)),
    ("residual_conv_projection", {"type": "residual", "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "batch_norm"}, {"type": "relu"}]},
     [(8, 8, 8), (8, 7, 7), (8, 1, 1)],
     lambda s: [nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16), nn.Conv2d(8, 16, 1, stride=2, bias=False)]),
    ("residual_channels_only", {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1}]},
     [(3, 5, 5)], lambda s: [nn.Conv2d(3, 6, 3), nn.Conv2d(3, 6, 1, bias=False)]),
    ("residual_conv1d_projection", {"type": "residual", "layers": [
        {"type": "conv1d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1}]},
     [(4, 10), (4, 9)], lambda s: [nn.Conv1d(4, 6, 3), nn.Conv1d(4, 6, 1, stride=2, bias=False)]),
    ("residual_linear_projection", {"type": "residual", "layers": [{"type": "linear", "out_features": 12}, {"type": "gelu"}]},
     [(10,), (5, 10)], lambda s: [_lin(10, 12), _lin(10, 12, bias=False)]),
    ("concat_features", {"type": "concat", "branches": [
        [{"type": "linear", "out_features": 4}], [{"type": "linear", "out_features": 6}, {"type": "relu"}], [{"type": "dropout"}]]},
     [(5,)], lambda s: [_lin(5, 4), _lin(5, 6)]),
    ("concat_channels", {"type": "concat", "branches": [
        [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}],
        [{"type": "conv2d", "out_channels": 2, "kernel_size": 1}, {"type": "batch_norm"}]]},
     [(3, 8, 8), (3, 1, 5)], lambda s: [nn.Conv2d(3, 4, 3), nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)]),
    ("nested_containers", {"type": "sequential", "repeat": 2, "layers": [
        {"type": "residual", "layers": [{"type": "concat", "branches": [
            [{"type": "linear", "out_features": 3}], [{"type": "linear", "out_features": 5}]]}]}]},
     [(8,)], lambda s: [_lin(8, 3), _lin(8, 5)] * 2),
]


def _count(reference) -> int:
    modules = reference if isinstance(reference, list) else [reference]
    return sum(p.numel() for m in modules for p in m.parameters())


def _shapes(module) -> list:
    return sorted(tuple(p.shape) for p in module.parameters())


def test_every_layer_type_has_a_case():
    """A new layer class without a case here fails this test."""
    tested = {LAYER.validate_python(spec).type for _, spec, _, _ in CASES}
    every = {type_tag(m) for m in union_members(LayerSpec)}
    assert every - tested == set(), f"CASES: no case for {sorted(every - tested)}"
    assert {type(LAYER.validate_python(spec)) for _, spec, _, _ in CASES} == set(union_members(LayerSpec)) == set(LAYER_CLASSES)


@pytest.mark.parametrize("spec, shapes, reference", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_layer_output_shape_and_parameters(spec, shapes, reference):
    layer = LAYER.validate_python(spec)
    torch.manual_seed(0)
    for shape in shapes:
        out = layer.output_shape(shape)
        module = layer.build(shape).eval()
        with torch.no_grad():
            y = module(torch.randn(2, *shape))
        assert tuple(y.shape) == (2, *out), f"input {shape}: output_shape says {out}, the module gives {tuple(y.shape[1:])}"
        assert torch.isfinite(y).all()
        got = sum(p.numel() for p in module.parameters())
        if reference is None:
            assert got == 0
        else:
            ref = reference(shape)
            assert got == _count(ref), f"input {shape}"
            if not isinstance(ref, list):
                assert _shapes(module) == _shapes(ref)
        # the shape walker used by validation agrees with output_shape
        assert chain_shapes([layer], shape) == out


@pytest.mark.parametrize("spec, fn", [
    ({"type": "relu"}, torch.relu),
    ({"type": "leaky_relu", "negative_slope": 0.2}, lambda x: nn.functional.leaky_relu(x, 0.2)),
    ({"type": "elu", "alpha": 0.5}, lambda x: nn.functional.elu(x, 0.5)),
    ({"type": "gelu"}, nn.functional.gelu),
    ({"type": "silu"}, nn.functional.silu),
    ({"type": "sigmoid"}, torch.sigmoid),
    ({"type": "tanh"}, torch.tanh),
    ({"type": "dropout", "p": 0.9}, lambda x: x),  # identity in evaluation
    ({"type": "flatten"}, lambda x: x.reshape(len(x), -1)),
    ({"type": "reshape", "shape": [3, 4]}, lambda x: x.reshape(len(x), 3, 4)),
    ({"type": "global_avg_pool"}, lambda x: x.mean(dim=(2, 3))),
    ({"type": "avg_pool2d", "kernel_size": 2}, lambda x: nn.functional.avg_pool2d(x, 2)),
    ({"type": "max_pool2d", "kernel_size": 3, "stride": 1, "padding": 1}, lambda x: nn.functional.max_pool2d(x, 3, 1, 1)),
])
def test_parameterless_layers_compute_what_torch_computes(spec, fn):
    layer = LAYER.validate_python(spec)
    shape = (2, 2, 3) if spec["type"] in ("global_avg_pool", "max_pool2d") else (2, 4, 4) if spec["type"] == "avg_pool2d" else (12,)
    x = torch.randn(5, *shape)
    with torch.no_grad():
        assert torch.allclose(layer.build(shape).eval()(x), fn(x), atol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_last_is_the_final_step_of_the_sequence(kind, bidirectional):
    """output: last is the final state per direction: forward at the last step, backward at the first."""
    layer = LAYER.validate_python({"type": kind, "hidden_size": 4, "num_layers": 2, "bidirectional": bidirectional})
    module = layer.build((6, 3)).eval()
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        last, sequence = module(x), module.rnn(x)[0]
    expected = torch.cat([sequence[:, -1, :4], sequence[:, 0, 4:]], dim=1) if bidirectional else sequence[:, -1]
    assert torch.allclose(last, expected, atol=1e-6)


def test_residual_adds_the_skip_connection():
    layer = LAYER.validate_python({"type": "residual", "layers": [{"type": "linear", "out_features": 4}]})
    module = layer.build((4,))
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.allclose(module(x), x + module.body(x))
    projected = LAYER.validate_python({"type": "residual", "layers": [{"type": "linear", "out_features": 6}]}).build((4,))
    with torch.no_grad():
        assert torch.allclose(projected(x), projected.projection(x) + projected.body(x))


def test_concat_joins_branch_outputs_in_order():
    layer = LAYER.validate_python({"type": "concat", "branches": [[{"type": "linear", "out_features": 2}], [{"type": "tanh"}]]})
    module = layer.build((3,))
    x = torch.randn(4, 3)
    with torch.no_grad():
        assert torch.allclose(module(x), torch.cat([module.branches[0](x), torch.tanh(x)], dim=1))


def test_sequential_repeat_has_separate_weights():
    layer = LAYER.validate_python({"type": "sequential", "repeat": 3, "layers": [{"type": "linear", "out_features": 4}]})
    module = layer.build((4,))
    weights = [p for n, p in module.named_parameters() if n.endswith("weight")]
    assert len(weights) == 3 and len({w.data_ptr() for w in weights}) == 3


@pytest.mark.parametrize("spec, shape, message", [
    ({"type": "conv2d", "out_channels": 2, "kernel_size": 3}, (64,), "expects input (C, H, W), got (64,)"),
    ({"type": "conv1d", "out_channels": 2, "kernel_size": 3}, (4, 4, 4), "expects input (C, L), got (4, 4, 4)"),
    ({"type": "conv2d", "out_channels": 2, "kernel_size": 5}, (1, 4, 8), "kernel of size (5, 5) does not fit input (1, 4, 8)"),
    ({"type": "max_pool1d", "kernel_size": 5}, (2, 4), "pooling window of size 5 does not fit input (2, 4)"),
    ({"type": "max_pool2d", "kernel_size": 2}, (8,), "expects input (C, H, W), got (8,)"),
    ({"type": "dropout2d"}, (16,), "expects input (C, H, W), got (16,)"),
    ({"type": "dropout1d"}, (16,), "expects input (C, L), got (16,)"),
    ({"type": "reshape", "shape": [3, 3]}, (10,), "cannot reshape (10,) (10 values) to (3, 3) (9 values)"),
    ({"type": "linear", "out_features": 2}, (1, 2, 3), "expects input (features,) or (time, features), got (1, 2, 3)"),
    ({"type": "lstm", "hidden_size": 2}, (8,), "expects input (time, features), got (8,)"),
    ({"type": "global_avg_pool"}, (8,), "expects input (C, L) or (C, H, W), got (8,)"),
    ({"type": "batch_norm"}, (1, 2, 3, 4), "expects input (features,), (C, L) or (C, H, W), got (1, 2, 3, 4)"),
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 1, "groups": 3}, (3, 2, 2), "groups=3 must divide"),
    ({"type": "residual", "layers": [{"type": "flatten"}]}, (2, 3), "cannot project the skip connection from (2, 3) to (6,)"),
    ({"type": "residual", "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 1, "padding": 2}]}, (2, 3, 3),
     "cannot project the skip connection from (2, 3, 3) to (4, 7, 7)"),
    ({"type": "concat", "branches": [[{"type": "linear", "out_features": 2}], [{"type": "linear", "out_features": 3}]]}, (4, 5),
     "branch outputs must agree on every axis but the first"),
])
def test_shape_errors(spec, shape, message):
    layer = LAYER.validate_python(spec)
    with pytest.raises(ShapeError) as e:
        layer.output_shape(shape)
    assert message in e.value.message


def test_shape_errors_in_containers_carry_the_inner_path():
    layers = [LAYER.validate_python({"type": "sequential", "layers": [
        {"type": "relu"}, {"type": "residual", "layers": [{"type": "relu"}, {"type": "conv2d", "out_channels": 2, "kernel_size": 3}]}]})]
    with pytest.raises(ShapeError) as e:
        chain_shapes(layers, (12,), ("model", "layers"))
    assert e.value.path == ("model", "layers", 0, "layers", 1, "layers", 1)
    assert e.value.layer_type == "conv2d"


@pytest.mark.parametrize("scheme, check", [
    ("zeros", lambda w: bool((w == 0).all())),
    ("normal", lambda w: 0.02 < float(w.std()) < 0.08),
    ("xavier_uniform", lambda w: float(w.abs().max()) <= math.sqrt(6 / (200 + 100)) + 1e-6),
    ("kaiming_normal", lambda w: abs(float(w.std()) - math.sqrt(2 / 200)) < 0.02),
])
def test_init_schemes(scheme, check):
    init = InitSpec(weight=scheme, bias="zeros", std=0.05)
    model, _ = build_chain([LAYER.validate_python({"type": "linear", "out_features": 100})], (200,), init)
    assert check(model[0].weight.detach())
    assert bool((model[0].bias == 0).all())


def test_layer_init_overrides_the_model_init():
    layers = [LAYER.validate_python({"type": "linear", "out_features": 50}),
              LAYER.validate_python({"type": "linear", "out_features": 50, "init": {"weight": "normal", "std": 1.0}}),
              LAYER.validate_python({"type": "sequential", "init": {"weight": "xavier_normal"},
                                     "layers": [{"type": "conv1d", "out_channels": 4, "kernel_size": 1}]})]
    model, _ = build_chain(layers[:2], (50,), InitSpec(weight="zeros"))
    assert bool((model[0].weight == 0).all())
    assert float(model[1].weight.detach().std()) > 0.5
    conv, _ = build_chain(layers[2:], (3, 5), InitSpec(weight="zeros"))
    assert float(conv[0][0].weight.detach().abs().sum()) > 0


def test_a_huge_repeat_of_a_shape_keeping_block_is_checked_at_once():
    layer = LAYER.validate_python({"type": "sequential", "repeat": 10**9, "layers": [{"type": "relu"}, {"type": "layer_norm"}]})
    assert layer.output_shape((4, 6)) == (4, 6)
    shrinking = LAYER.validate_python({"type": "sequential", "repeat": 10**9,
                                       "layers": [{"type": "conv1d", "out_channels": 2, "kernel_size": 3}]})
    with pytest.raises(ShapeError) as e:
        shrinking.output_shape((2, 9))
    assert e.value.path == ("layers", 0) and "does not fit input (2, 1)" in e.value.message
