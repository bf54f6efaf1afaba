"""The generator and discriminator, built from their specs (see gen.architecture).

Read top to bottom: the small pieces (spectral-normalised layers, class-conditional batch
norm, self-attention, cell operations), then the cell, then the two networks. Every weight
layer (convolution, transposed convolution, linear, projection embedding) is spectrally
normalised, as the source method does in both networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gen.architecture import CellSpec, DiscriminatorSpec, GeneratorSpec, from_json, to_json

# ---------------------------------------------------------------------------------------------
# Layers


def sn_conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Module:
    return spectral_norm(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups)
    )


def activation(name: str) -> nn.Module:
    return {"elu": nn.ELU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}[name]()


class ClassConditionalBatchNorm(nn.Module):
    """Batch norm whose gain and bias are looked up per class (the generator's conditioning)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gain = self.gain(labels)[:, :, None, None]
        bias = self.bias(labels)[:, :, None, None]
        return self.norm(x) * gain + bias


class BatchNorm(nn.BatchNorm2d):
    """Plain batch norm with the conditional one's call signature, so cells need not care."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class SelfAttention(nn.Module):
    """SAGAN self-attention; returns ``gamma * attention(x)`` for the caller's residual sum.

    Keys and values are max-pooled, as in SAGAN, but to a grid of at most 16x16 rather than
    by a fixed 2x2: at 64x64 that is 256 keys instead of 1024, which makes the attention
    four times cheaper where it costs most (the discriminator's first cell) and keeps a
    key every 4 pixels, finer than any structure of a 64x64 cell image. Gamma starts at 0
    so the network begins as if attention were absent.
    """

    def __init__(self, channels: int):
        super().__init__()
        key_channels = max(1, channels // 8)
        self.query = spectral_norm(nn.Conv2d(channels, key_channels, 1, bias=False))
        self.key = spectral_norm(nn.Conv2d(channels, key_channels, 1, bias=False))
        self.value = spectral_norm(nn.Conv2d(channels, max(1, channels // 2), 1, bias=False))
        self.out = spectral_norm(nn.Conv2d(max(1, channels // 2), channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        pool = max(2, height // 16)
        query = self.query(x).flatten(2).transpose(1, 2)  # (batch, positions, key channels)
        key = F.max_pool2d(self.key(x), pool).flatten(2)  # (batch, key channels, keys)
        value = F.max_pool2d(self.value(x), pool).flatten(2).transpose(1, 2)  # (batch, keys, channels)
        # Written out rather than F.scaled_dot_product_attention: on the CPU that falls back
        # to a "safe" softmax that costs ~40% more here, and no fused kernel takes SAGAN's
        # values, which are wider than its keys. SAGAN does not scale the scores.
        attention = torch.bmm(query, key).softmax(dim=-1)
        attended = torch.bmm(attention, value).transpose(1, 2).reshape(batch, -1, height, width)
        return self.gamma * self.out(attended)


# ---------------------------------------------------------------------------------------------
# Cells


class ConvolutionOperation(nn.Module):
    """``conv -> activation -> (conditional) batch norm``: every convolution edge of a cell."""

    def __init__(self, kind: str, channels: int, act: str, norm: nn.Module):
        super().__init__()
        if kind == "separable_conv3x3":
            self.conv = nn.Sequential(
                sn_conv(channels, channels, 3, groups=channels), sn_conv(channels, channels, 1)
            )
        else:
            self.conv = sn_conv(channels, channels, {"conv1x1": 1, "conv3x3": 3, "conv5x5": 5}[kind])
        self.act = activation(act)
        self.norm = norm

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.conv(x)), labels)


class ParameterFreeOperation(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.kind == "skip":
            return x
        if self.kind == "max_pool3x3":
            return F.max_pool2d(x, 3, 1, 1)
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class Cell(nn.Module):
    """A node is the sum of the operations on its incoming edges; the last node is the output."""

    def __init__(self, spec: CellSpec, channels: int, act: str, num_classes: int | None):
        super().__init__()
        self.nodes = spec.nodes
        self.operations = nn.ModuleDict()
        for source, target, kind in spec.edges():
            if kind == "zero":
                continue
            if kind in ("skip", "max_pool3x3", "avg_pool3x3"):
                operation = ParameterFreeOperation(kind)
            else:
                norm = (
                    ClassConditionalBatchNorm(channels, num_classes) if num_classes else BatchNorm(channels)
                )
                operation = ConvolutionOperation(kind, channels, act, norm)
            self.operations[f"{source}_{target}"] = operation

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in range(1, self.nodes):
            incoming = [
                self.operations[f"{source}_{target}"](nodes[source], labels)
                for source in range(target)
                if f"{source}_{target}" in self.operations
            ]
            nodes.append(torch.stack(incoming).sum(0) if incoming else torch.zeros_like(x))
        return nodes[-1]


class CellStage(nn.Module):
    """``x + cell(x)``, plus ``attention(cell(x))`` where the spec asks for it."""

    def __init__(self, cell: Cell, attention: SelfAttention | None):
        super().__init__()
        self.cell = cell
        self.attention = attention

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cell_out = self.cell(x, labels)
        out = x + cell_out
        return out + self.attention(cell_out) if self.attention is not None else out


def cell_stages(
    spec: GeneratorSpec | DiscriminatorSpec, widths: tuple[int, ...], num_classes: int | None
) -> nn.ModuleList:
    if spec.cell is None:
        return nn.ModuleList()
    return nn.ModuleList(
        CellStage(
            Cell(spec.cell, width, spec.activation, num_classes),
            SelfAttention(width) if index in spec.attention else None,
        )
        for index, width in enumerate(widths, start=1)
    )


# ---------------------------------------------------------------------------------------------
# Generator


class UpsampleBlock(nn.Module):
    """Doubles height and width.

    ``nearest_conv_glu`` (the source's block): nearest x2, conv3x3 to twice the output
    channels, conditional batch norm, GLU over channels. ``transposed_conv`` (DCGAN):
    transposed conv 4x4 stride 2, conditional batch norm, activation.
    """

    def __init__(self, kind: str, in_channels: int, out_channels: int, act: str, num_classes: int):
        super().__init__()
        self.kind = kind
        if kind == "nearest_conv_glu":
            self.conv = sn_conv(in_channels, 2 * out_channels, 3)
            self.norm = ClassConditionalBatchNorm(2 * out_channels, num_classes)
            self.act = nn.GLU(dim=1)
        else:
            self.conv = spectral_norm(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1))
            self.norm = ClassConditionalBatchNorm(out_channels, num_classes)
            self.act = activation(act)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.kind == "nearest_conv_glu":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.act(self.norm(self.conv(x), labels))


class Generator(nn.Module):
    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        self.spec = spec
        widths = spec.channels
        self.stem = spectral_norm(nn.ConvTranspose2d(spec.noise_dim, widths[0], 4, 1, 0))
        self.stem_activation = activation(spec.activation)
        self.stages = cell_stages(spec, widths[:-1], spec.num_classes)
        self.upsamples = nn.ModuleList(
            UpsampleBlock(spec.upsample, c_in, c_out, spec.activation, spec.num_classes)
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.to_image = nn.Sequential(
            sn_conv(widths[-1], widths[-1], 3),
            activation(spec.activation),
            sn_conv(widths[-1], 3, 3),
            nn.Tanh(),
        )

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.stem_activation(self.stem(noise[:, :, None, None]))
        for index, upsample in enumerate(self.upsamples):
            if self.stages:
                x = self.stages[index](x, labels)
            x = upsample(x, labels)
        return self.to_image(x)


# ---------------------------------------------------------------------------------------------
# Discriminator


class DownsampleBlock(nn.Module):
    """Halves height and width.

    ``space_to_depth`` (the source's block): conv3x3, pixel unshuffle x2, conv1x1, activation.
    ``strided_conv`` (DCGAN): conv 4x4 stride 2, batch norm, activation.
    """

    def __init__(self, kind: str, in_channels: int, out_channels: int, act: str):
        super().__init__()
        if kind == "space_to_depth":
            self.layers = nn.Sequential(
                sn_conv(in_channels, out_channels, 3),
                nn.PixelUnshuffle(2),
                sn_conv(4 * out_channels, out_channels, 1),
                activation(act),
            )
        else:
            self.layers = nn.Sequential(
                spectral_norm(nn.Conv2d(in_channels, out_channels, 4, 2, 1)),
                nn.BatchNorm2d(out_channels),
                activation(act),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Discriminator(nn.Module):
    def __init__(self, spec: DiscriminatorSpec):
        super().__init__()
        self.spec = spec
        widths = spec.channels
        self.stem = nn.Sequential(sn_conv(3, widths[0], 3), activation(spec.activation))
        self.stages = cell_stages(spec, widths[:-1], None)
        self.downsamples = nn.ModuleList(
            DownsampleBlock(spec.downsample, c_in, c_out, spec.activation)
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.linear = spectral_norm(nn.Linear(widths[-1], 1))
        self.projection = spectral_norm(nn.Embedding(spec.num_classes, widths[-1]))

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for index, downsample in enumerate(self.downsamples):
            if self.stages:
                x = self.stages[index](x, labels)
            x = downsample(x)
        pooled = x.sum(dim=(2, 3))
        # Projection discriminator (Miyato & Koyama 2018): an unconditional score plus the
        # inner product of the features with the class embedding.
        return self.linear(pooled).squeeze(1) + (self.projection(labels) * pooled).sum(1)


def build(spec: GeneratorSpec | DiscriminatorSpec | dict) -> Generator | Discriminator:
    """The network a spec (or its JSON) describes."""
    if isinstance(spec, dict):
        spec = from_json(spec)
    return Generator(spec) if isinstance(spec, GeneratorSpec) else Discriminator(spec)


def architecture_json(network: Generator | Discriminator) -> dict:
    return to_json(network.spec)
