"""Receptive fields checked against brute force (raising single pixels) and arithmetic on known layer stacks."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from galleria.visualize.receptive import ReceptiveField, receptive_fields


def _pair(value) -> tuple[int, int]:
    return value if isinstance(value, tuple) else (value, value)


def _analytic(layers: list[nn.Module]) -> list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
    """(size, stride, offset) after each layer of a plain chain, by the textbook recurrence."""
    size, stride, offset = [1, 1], [1, 1], [0, 0]
    fields = []
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel, step, pad = _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding)
            dilation = _pair(getattr(layer, "dilation", 1))
            for i in (0, 1):
                offset[i] -= pad[i] * stride[i]
                size[i] += (kernel[i] - 1) * dilation[i] * stride[i]
                stride[i] *= step[i]
        fields.append((tuple(size), tuple(stride), tuple(offset)))
    return fields


def _as_tuple(field: ReceptiveField) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    return field.size, field.stride, field.offset


def _positive(model: nn.Module) -> nn.Module:
    """All weights positive and biases zero, in float64: every pixel in a unit's field then raises it when raised."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.rand(param.shape, generator=generator) * 0.5 + 0.5 if param.dim() > 1 else 0 * param)
    return model.double().eval()


def _raised_units(model: nn.Module, layers: list[str], input_shape) -> dict[str, torch.Tensor]:
    """Brute force: for each layer, how much raising each input pixel alone changes each unit.

    Returns per layer a [height * width, channels, rows, cols] tensor of changes, one forward pass
    over a batch holding the unperturbed input and one copy per pixel.
    """
    channels, height, width = input_shape
    base = torch.rand((1, channels, height, width), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    batch = base.repeat(height * width + 1, 1, 1, 1)
    pixel = torch.arange(height * width)
    batch[pixel + 1, :, pixel // width, pixel % width] += 1e6
    captured = {}

    def hook_for(layer):
        def hook(module, args, out):
            captured[layer] = out.clone()  # at once: the model may change it in place later (out += shortcut)

        return hook

    handles = [model.get_submodule(layer).register_forward_hook(hook_for(layer)) for layer in layers]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {layer: out[1:] - out[:1] for layer, out in captured.items()}


def _influence(change: torch.Tensor, position, input_size) -> tuple[int, int, int, int]:
    """Bounding box (left, top, right, bottom) of the pixels whose raising changed the unit at position."""
    unit = change[:, :, position[0], position[1]].abs().sum(1)
    changed = (unit > 1e-6 * unit.max()).reshape(input_size)
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def _check_brute_force(model: nn.Module, layers: list[str], input_shape) -> None:
    fields = receptive_fields(model, layers, input_shape)
    changes = _raised_units(model, layers, input_shape)
    for layer in layers:
        cells = changes[layer].shape[2:]
        for row, col in [(0, 0), (1, 2), (cells[0] // 2, cells[1] // 2), (cells[0] - 1, cells[1] - 1)]:
            position = (min(row, cells[0] - 1), min(col, cells[1] - 1))
            assert fields[layer].box(position) == _influence(changes[layer], position, input_shape[1:]), (layer, position)


class _Block(nn.Module):
    """A residual block whose shortcut sees more than its main path, added in place as torchvision does."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, channels, 3, stride, 1), nn.LeakyReLU(0.1), nn.Conv2d(channels, channels, 1)
        )
        self.shortcut = nn.Conv2d(channels, channels, 5, stride, 2)

    def forward(self, x):
        out = self.main(x)
        out += self.shortcut(x)
        return out


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block1 = _Block(8, 1)
        self.block2 = _Block(8, 2)

    def forward(self, x):
        return self.block2(self.block1(self.stem(x)))


def test_three_3x3_convs_see_7_pixels_at_stride_1():
    model = nn.Sequential(*(nn.Conv2d(c, 4, 3, padding=1) for c in (3, 4, 4)))
    field = receptive_fields(model, ["2"], (3, 32, 32))["2"]
    assert (field.size, field.stride, field.offset) == ((7, 7), (1, 1), (-3, -3))


def test_two_stride_2_convs_see_7_pixels_at_stride_4():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, 2, 1))
    fields = receptive_fields(model, ["0", "1"], (3, 32, 32))
    assert (fields["0"].size, fields["0"].stride) == ((3, 3), (2, 2))
    assert (fields["1"].size, fields["1"].stride) == ((7, 7), (4, 4))


def test_mixed_stack_matches_arithmetic():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, (3, 5), stride=(2, 1)),  # unpadded, rectangular
        nn.MaxPool2d(3, stride=1, padding=1),
        nn.Conv2d(16, 16, 3, dilation=2, padding=2),
        nn.AvgPool2d(2),
    )
    fields = receptive_fields(model, [str(i) for i in range(len(model))], (3, 48, 40))
    for i, expected in enumerate(_analytic(list(model))):
        assert _as_tuple(fields[str(i)]) == expected, i


def test_plain_stack_against_brute_force():
    # Max-pooling is left to the test above: with all weights positive every channel peaks at the
    # same pixel, so a few random inputs reach too few pixels of each pooling window.
    model = _positive(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(8, 8, 3, stride=2),
            nn.AvgPool2d(3, stride=1, padding=1),
            nn.Conv2d(8, 8, (3, 5), dilation=2, padding=(1, 3)),
            nn.AvgPool2d(2),
        )
    )
    _check_brute_force(model, ["0", "2", "3", "4", "5"], (3, 28, 24))


def test_residual_model_against_brute_force():
    model = _positive(_Residual())
    fields = receptive_fields(model, ["block1.main.2", "block1", "block2"], (3, 24, 24))
    # The in-place add must not leak the wider shortcut into the main path's field.
    assert fields["block1.main.2"].size == (5, 5)
    assert fields["block1"].size == (7, 7)
    assert (fields["block2"].size, fields["block2"].stride) == ((11, 11), (2, 2))
    _check_brute_force(model, ["block1.main.2", "block1", "block2.main.2", "block2"], (3, 24, 24))


def test_field_larger_than_input_is_measured_on_a_longer_strip():
    model = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), *(nn.Conv2d(8, 8, 5, padding=2) for _ in range(7)))
    field = receptive_fields(model, ["7"], (3, 16, 16))["7"]
    assert _as_tuple(field) == _analytic(list(model))[-1] == ((33, 33), (1, 1), (-16, -16))
    assert field.box((3, 3)) == (0, 0, 16, 16)


class _FixedSize(nn.Module):
    """A model that refuses any other input size, like one ending in a fixed-size Linear layer."""

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(*(nn.Conv2d(3, 3, 5, padding=2) for _ in range(8)))

    def forward(self, x):
        if x.shape[2:] != (16, 16):
            raise RuntimeError("expected 16 x 16 input")
        return self.convs(x)


def test_field_that_cannot_be_pinned_down_covers_the_whole_input():
    # 33 pixels wide: no position's box has an edge inside a 16-pixel input.
    field = receptive_fields(_FixedSize(), ["convs.7"], (3, 16, 16))["convs.7"]
    assert field.stride == (1, 1)
    assert field.size == (31, 31) and field.offset == (-15, -15)  # smallest field in which all 16 positions see all
    assert {field.box((r, c)) for r in range(16) for c in range(16)} == {(0, 0, 16, 16)}


def test_vector_outputs_have_no_field():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    fields = receptive_fields(model, ["0", "2", "3", "4"], (3, 16, 16))
    assert fields["3"] is None and fields["4"] is None
    assert fields["2"].box((0, 0)) == (0, 0, 16, 16)
    assert fields["0"].size == (3, 3)


def test_resnet18_matches_hand_computed_fields():
    # conv1 7x7/2 -> 7; maxpool 3x3/2 -> 11 at stride 4; each 3x3 conv then adds 2 * stride:
    # layer1 11 + 4 * 8 = 43, layer2 43 + 8 + 3 * 16 = 99, layer3 211, layer4 435.
    model = torchvision.models.resnet18()
    fields = receptive_fields(model, ["maxpool", "layer1", "layer2", "layer3", "layer4", "fc"], (3, 224, 224))
    assert [fields[n].size[0] for n in ("maxpool", "layer1", "layer2", "layer3", "layer4")] == [11, 43, 99, 211, 435]
    assert [fields[n].stride[0] for n in ("layer1", "layer2", "layer3", "layer4")] == [4, 8, 16, 32]
    assert fields["layer4"].offset == (-217, -217)
    assert fields["fc"] is None


def _conv_chain(model: nn.Module, names: list[str], input_shape) -> dict[str, tuple]:
    """Fields from composing every Conv2d run before each named layer's output: exact for models whose
    convolutions all lie on one path and whose skips are identities, as in EfficientNet-Lite."""
    size, stride, offset = 1, 1, 0
    fields = {}

    def on_conv(module, args, out):
        nonlocal size, stride, offset
        offset -= module.padding[0] * stride
        size += (module.kernel_size[0] - 1) * module.dilation[0] * stride
        stride *= module.stride[0]

    def on_layer(name):
        def hook(module, args, out):
            fields.setdefault(name, ((size,) * 2, (stride,) * 2, (offset,) * 2))

        return hook

    handles = [m.register_forward_hook(on_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [model.get_submodule(name).register_forward_hook(on_layer(name)) for name in names]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *input_shape)))
    finally:
        for handle in handles:
            handle.remove()
    return fields


def test_efficientnet_lite0_matches_its_convolution_chain():
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    names = ["conv_stem", *(f"blocks.{i}" for i in range(7)), "conv_head"]
    fields = receptive_fields(model, names, (3, 224, 224))
    expected = _conv_chain(model, names, (3, 224, 224))
    assert {name: _as_tuple(fields[name]) for name in names} == expected
    assert fields["conv_head"].size == (851, 851)  # far larger than the input: measured on strips


def test_model_is_left_as_it_was():
    model = _Residual().train()
    model.block1.eval()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    modes = {name: m.training for name, m in model.named_modules()}
    with torch.inference_mode():
        receptive_fields(model, ["block1", "block2"], (3, 16, 16))
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(p, before[name]) and p.grad is None for name, p in model.named_parameters())
    assert not any(m._forward_hooks for m in model.modules())


class _Spare(nn.Module):
    """A model holding a layer its forward never calls."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.spare = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.conv(x)


def test_hooks_are_removed_when_measuring_fails():
    model = _Spare().train()
    with pytest.raises(ValueError, match="spare"):
        receptive_fields(model, ["conv", "spare"], (3, 8, 8))
    with pytest.raises(AttributeError):
        receptive_fields(model, ["conv", "no_such_layer"], (3, 8, 8))
    assert not any(m._forward_hooks for m in model.modules())
    assert all(m.training for m in model.modules())


def test_box_is_clipped_to_the_input():
    field = ReceptiveField(size=(7, 5), stride=(4, 2), offset=(-3, -2), input_size=(20, 10))
    assert field.box((0, 0)) == (0, 0, 3, 4)
    assert field.box((2, 3)) == (4, 5, 9, 12)
    assert field.box((5, 5)) == (8, 17, 10, 20)
