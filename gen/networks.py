"""The generator and discriminator, built from their specs (see gen.architecture).

Read top to bottom: the small pieces (spectral-normalised layers, class-conditional batch
norm, self-attention, cell operations), then the cell, then the two networks. Where the spec
asks for it (every preset but the baselines, whose papers predate it), every weight layer
(convolution, transposed convolution, linear, projection embedding) is spectrally normalised,
as the source method does in both networks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gen.architecture import CellSpec, DiscriminatorSpec, GeneratorSpec, from_json, to_json

COLOUR_NUMBERS = 6  # an image's colour: its per-channel mean and standard deviation


BORDER_FRACTION = 8  # colour_region "border": the outer 1/8 of each side (8 pixels at 64)


def colour_statistics(images: torch.Tensor, region: str = "image") -> torch.Tensor:
    """(N, 3, H, W) images to (N, 6): each channel's mean, then each channel's standard deviation
    (in the images' precision, float32 at least), over every pixel (``region`` "image") or over
    the frame of width H // BORDER_FRACTION along the four edges ("border")."""
    pixels = images if images.dtype == torch.float64 else images.float()
    if region == "border":
        height, width = pixels.shape[-2:]
        inside = torch.zeros(height, width, dtype=torch.bool, device=pixels.device)
        band = max(height // BORDER_FRACTION, 1)
        inside[band:-band, band:-band] = True
        pixels = pixels[..., ~inside]
    else:
        pixels = pixels.flatten(2)
    return torch.cat([pixels.mean(2), pixels.std(2, correction=0)], 1)


# ---------------------------------------------------------------------------------------------
# Layers


def normalised(layer: nn.Module, spectral: bool = True) -> nn.Module:
    """``layer`` under spectral norm (Miyato et al. 2018) when ``spectral``, else as it is."""
    return spectral_norm(layer) if spectral else layer


def sn_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    spectral: bool = True,
    padding_mode: str = "zeros",
) -> nn.Module:
    padding = kernel_size // 2 if stride == 1 else (kernel_size - stride) // 2
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride, padding, groups=groups, padding_mode=padding_mode
    )
    return normalised(conv, spectral)


def activation(name: str) -> nn.Module:
    return {"elu": nn.ELU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}[name]()


class ClassConditionalBatchNorm(nn.Module):
    """Batch norm whose gain and bias are looked up per class (the generator's conditioning).

    ``conditioning`` in [0, 1] scales the class signal: the gain becomes 1 + c (gain - 1) and
    the bias c * bias, so 0 is a plain, unconditional batch norm (see ``set_conditioning``).
    """

    conditioning = 1.0

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
        if self.conditioning != 1:
            gain, bias = 1 + self.conditioning * (gain - 1), self.conditioning * bias
        return self.norm(x) * gain + bias


class BatchNorm(nn.BatchNorm2d):
    """Plain batch norm with the conditional one's call signature, so cells need not care."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class NoNorm(nn.Module):
    """The discriminator's norm when its spec says ``none``, with the same call signature."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return x


def discriminator_norm(spec: DiscriminatorSpec) -> Callable[[int], nn.Module]:
    return BatchNorm if spec.norm == "batch" else (lambda channels: NoNorm())


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

    def __init__(self, kind: str, channels: int, act: str, norm: nn.Module, spectral: bool = True):
        super().__init__()
        if kind == "separable_conv3x3":
            self.conv = nn.Sequential(
                sn_conv(channels, channels, 3, groups=channels, spectral=spectral),
                sn_conv(channels, channels, 1, spectral=spectral),
            )
        else:
            size = {"conv1x1": 1, "conv3x3": 3, "conv5x5": 5}[kind]
            self.conv = sn_conv(channels, channels, size, spectral=spectral)
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

    def __init__(
        self, spec: CellSpec, channels: int, act: str, norm: Callable[[int], nn.Module], spectral: bool
    ):
        super().__init__()
        self.nodes = spec.nodes
        self.operations = nn.ModuleDict()
        for source, target, kind in spec.edges():
            if kind == "zero":
                continue
            if kind in ("skip", "max_pool3x3", "avg_pool3x3"):
                operation = ParameterFreeOperation(kind)
            else:
                operation = ConvolutionOperation(kind, channels, act, norm(channels), spectral)
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
    """``x + cell(x)``, plus ``attention(cell(x))`` where the spec asks for it.

    Without a cell (the plain presets) a stage is ``x + attention(x)``, SAGAN's residual
    attention, or nothing at all.
    """

    def __init__(self, cell: Cell | None, attention: SelfAttention | None):
        super().__init__()
        self.cell = cell
        self.attention = attention

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cell_out = self.cell(x, labels) if self.cell is not None else x
        out = x + cell_out if self.cell is not None else x
        return out + self.attention(cell_out) if self.attention is not None else out


def cell_stages(
    spec: GeneratorSpec | DiscriminatorSpec, widths: tuple[int, ...], norm: Callable[[int], nn.Module]
) -> nn.ModuleList:
    """One stage per width (resolution); empty when there is neither a cell nor attention."""
    if spec.cell is None and not spec.attention:
        return nn.ModuleList()
    return nn.ModuleList(
        CellStage(
            Cell(spec.cell, width, spec.activation, norm, spec.spectral_norm) if spec.cell else None,
            SelfAttention(width) if index in spec.attention else None,
        )
        for index, width in enumerate(widths, start=1)
    )


# ---------------------------------------------------------------------------------------------
# Generator


class UpsampleBlock(nn.Module):
    """Doubles height and width.

    ``nearest_conv_glu`` (the source's block): nearest x2, conv3x3 to twice the output
    channels, conditional batch norm, GLU over channels. ``nearest_conv`` (BigGAN's and the
    plain presets' block, cheaper): nearest x2, conv3x3, conditional batch norm, activation.
    ``transposed_conv`` (DCGAN): transposed conv 4x4 stride 2, conditional batch norm,
    activation.
    """

    def __init__(
        self,
        kind: str,
        in_channels: int,
        out_channels: int,
        act: str,
        num_classes: int,
        spectral: bool,
        padding: str = "zeros",
    ):
        super().__init__()
        self.upsample = kind != "transposed_conv"
        if kind == "nearest_conv_glu":
            self.conv = sn_conv(in_channels, 2 * out_channels, 3, spectral=spectral, padding_mode=padding)
            self.norm = ClassConditionalBatchNorm(2 * out_channels, num_classes)
            self.act = nn.GLU(dim=1)
        elif kind == "nearest_conv":
            self.conv = sn_conv(in_channels, out_channels, 3, spectral=spectral, padding_mode=padding)
            self.norm = ClassConditionalBatchNorm(out_channels, num_classes)
            self.act = activation(act)
        else:
            self.conv = normalised(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1), spectral)
            self.norm = ClassConditionalBatchNorm(out_channels, num_classes)
            self.act = activation(act)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.act(self.norm(self.conv(x), labels))


class SkipLayerExcitation(nn.Module):
    """FastGAN's skip-layer excitation (Liu et al., ICLR 2021): a small feature map gates the
    channels of one eight times larger. Pool to 4x4, conv 4x4 to one value per channel, LeakyReLU
    0.1 (FastGAN's Swish does the same job), conv 1x1, sigmoid; the large map is multiplied by it.
    It gives the fine layers a second, short path from the coarse ones (a global style signal)."""

    def __init__(self, in_channels: int, out_channels: int, spectral: bool):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            normalised(nn.Conv2d(in_channels, out_channels, 4), spectral),
            nn.LeakyReLU(0.1),
            normalised(nn.Conv2d(out_channels, out_channels, 1), spectral),
            nn.Sigmoid(),
        )

    def forward(self, small: torch.Tensor, large: torch.Tensor) -> torch.Tensor:
        return large * self.gate(small)


EXCITATION_SPAN = 3  # a map at resolution r gates the one at 8r (three upsamplings later)


class Generator(nn.Module):
    conditioning = 1.0  # scales the stem's one-hot label (set_conditioning)

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        self.spec = spec
        widths, spectral = spec.channels, spec.spectral_norm
        inputs = spec.noise_dim + (COLOUR_NUMBERS if spec.colour_bank else 0)
        inputs += spec.num_classes if spec.stem_label else 0
        self.stem = normalised(nn.ConvTranspose2d(inputs, widths[0], 4, 1, 0), spectral)
        if spec.colour_bank:  # filled from the training images (fill_colour_bank), saved with G
            bank = torch.zeros(spec.num_classes, spec.colour_bank, COLOUR_NUMBERS)
            self.register_buffer("colour_bank", bank)
            self.register_buffer("colour_counts", torch.ones(spec.num_classes, dtype=torch.long))
            self.register_buffer("colour_centre", torch.zeros(COLOUR_NUMBERS))
            self.register_buffer("colour_scale", torch.ones(COLOUR_NUMBERS))
        self.stem_activation = activation(spec.activation)
        self.stages = cell_stages(
            spec, widths[:-1], lambda channels: ClassConditionalBatchNorm(channels, spec.num_classes)
        )
        self.upsamples = nn.ModuleList(
            UpsampleBlock(
                spec.upsample, c_in, c_out, spec.activation, spec.num_classes, spectral, spec.padding
            )
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        # Keyed by the resolution index it gates (0 is the stem's 4x4, i the i-th upsampling's).
        self.excitations = nn.ModuleDict(
            {
                str(large): SkipLayerExcitation(widths[large - EXCITATION_SPAN], widths[large], spectral)
                for large in range(EXCITATION_SPAN, len(widths))
                if spec.skip_excitation
            }
        )
        self.to_image = nn.Sequential(
            sn_conv(widths[-1], widths[-1], 3, spectral=spectral, padding_mode=spec.padding),
            activation(spec.activation),
            sn_conv(widths[-1], 3, 3, spectral=spectral, padding_mode=spec.padding),
        )
        if spec.colour_style:  # no spectral norm: it starts at zero (see GeneratorSpec.colour_style)
            self.colour_style = nn.Linear(spec.noise_dim, 6)
            nn.init.zeros_(self.colour_style.weight)
            nn.init.zeros_(self.colour_style.bias)
        self.output = {"tanh": nn.Tanh, "linear": nn.Identity, "clamp": nn.Hardtanh}[spec.output]()

    @torch.no_grad()
    def fill_colour_bank(self, colours: torch.Tensor, labels: torch.Tensor) -> None:
        """Hold the colour of every training image (``colours``: colours_of the images in [-1, 1])
        by class: a class of n images fills its first n slots in order; centre and
        scale standardise the inputs."""
        colours = colours.to(self.colour_bank)
        self.colour_centre.copy_(colours.mean(0))
        self.colour_scale.copy_(colours.std(0, correction=0).clamp_min(1e-6))
        self.colour_bank.zero_()
        for label in range(self.spec.num_classes):
            members = colours[labels.to(colours.device) == label]
            if len(members) > self.spec.colour_bank:
                raise ValueError(f"class {label} has {len(members)} images, more than the bank's slots")
            self.colour_bank[label, : len(members)] = members
            self.colour_counts[label] = max(len(members), 1)

    def requested_colours(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training-image colour (N, 6) each image is drawn in: of its class's n images, the
        one at floor(n * Phi(noise[:, 0])), so every training image's colour is equally likely."""
        counts = self.colour_counts[labels]
        quantile = torch.special.ndtr(noise[:, 0].float())
        slots = torch.minimum((quantile * counts).long(), counts - 1)
        return self.colour_bank[labels, slots]

    def colours_of(self, images: torch.Tensor) -> torch.Tensor:
        """Images' colours (N, 6) as the bank holds them (colour_statistics over the spec's region)."""
        return colour_statistics(images, self.spec.colour_region)

    def standardised(self, colours: torch.Tensor) -> torch.Tensor:
        """Colours (N, 6) in units of their spread over the training images, centred on their mean."""
        return (colours.float() - self.colour_centre) / self.colour_scale

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        inputs = [noise]
        if self.spec.colour_bank:
            inputs.append(self.standardised(self.requested_colours(noise, labels)).to(noise.dtype))
        if self.spec.stem_label:
            one_hot = nn.functional.one_hot(labels, self.spec.num_classes).to(noise.dtype)
            inputs.append(self.conditioning * one_hot)
        x = self.stem_activation(self.stem(torch.cat(inputs, 1)[:, :, None, None]))
        maps = [x]
        for index, upsample in enumerate(self.upsamples, start=1):
            if self.stages:
                x = self.stages[index - 1](x, labels)
            x = upsample(x, labels)
            if str(index) in self.excitations:
                x = self.excitations[str(index)](maps[index - EXCITATION_SPAN], x)
            maps.append(x)
        x = self.to_image(x)
        if self.spec.colour_style:
            scale, shift = self.colour_style(noise)[:, :, None, None].chunk(2, dim=1)
            x = x * (1 + scale) + shift
        return self.output(x)


# ---------------------------------------------------------------------------------------------
# Discriminator


class DownsampleBlock(nn.Module):
    """Halves height and width.

    ``space_to_depth`` (the source's block): conv3x3, pixel unshuffle x2, conv1x1, activation.
    ``strided_conv`` (DCGAN): conv 4x4 stride 2, batch norm (or none), activation.
    """

    def __init__(self, spec: DiscriminatorSpec, in_channels: int, out_channels: int):
        super().__init__()
        spectral = spec.spectral_norm
        if spec.downsample == "space_to_depth":
            self.layers = nn.Sequential(
                sn_conv(in_channels, out_channels, 3, spectral=spectral),
                nn.PixelUnshuffle(2),
                sn_conv(4 * out_channels, out_channels, 1, spectral=spectral),
                activation(spec.activation),
            )
        else:
            self.layers = nn.Sequential(
                sn_conv(in_channels, out_channels, 4, stride=2, spectral=spectral),
                nn.BatchNorm2d(out_channels) if spec.norm == "batch" else nn.Identity(),
                activation(spec.activation),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Discriminator(nn.Module):
    """Image and label in; a realness score per image, or with the autoencoder head (BEGAN)
    the image's reconstruction, which the loss scores by its L1 error."""

    conditioning = 1.0  # scales the projection term (see set_conditioning)

    def __init__(self, spec: DiscriminatorSpec):
        super().__init__()
        self.spec = spec
        widths, spectral = spec.channels, spec.spectral_norm
        self.stem = nn.Sequential(sn_conv(3, widths[0], 3, spectral=spectral), activation(spec.activation))
        self.stages = cell_stages(spec, widths[:-1], discriminator_norm(spec))
        self.downsamples = nn.ModuleList(
            DownsampleBlock(spec, c_in, c_out) for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        if spec.head == "autoencoder":
            self.decoder = AutoencoderDecoder(spec)
        else:
            self.linear = normalised(nn.Linear(widths[-1], 1), spectral)
            self.projection = normalised(nn.Embedding(spec.num_classes, widths[-1]), spectral)
            if spec.classifier_head:
                self.classifier = normalised(nn.Linear(widths[-1], spec.num_classes), spectral)
            if spec.reconstruction_head:
                self.reconstructor = ReconstructionDecoder(spec)
            if spec.colour_projection:
                colour_map = nn.Linear(COLOUR_NUMBERS, widths[-1], bias=False)
                self.colour_projection = normalised(colour_map, spectral)
            if spec.minibatch_std:
                self.minibatch = nn.Sequential(
                    sn_conv(widths[-1] + 1, widths[-1], 3, spectral=spectral), activation(spec.activation)
                )

    def feature_maps(self, images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        """The stem's map and every downsampling's, finest first."""
        x = self.stem(images)
        maps = [x]
        for index, downsample in enumerate(self.downsamples):
            if self.stages:
                x = self.stages[index](x, labels)
            x = downsample(x)
            maps.append(x)
        return maps

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, colours: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``colours``: the standardised colour (N, 6) each image claims, for a D with a colour
        projection; without them (curation's realism score) that term is left out."""
        maps = self.feature_maps(images, labels)
        if self.spec.head == "autoencoder":
            return self.decoder(maps[-1], labels)
        coarsest = maps[-1]
        if self.spec.minibatch_std:
            coarsest = self.minibatch(with_minibatch_std(coarsest, self.spec.minibatch_std))
        pooled = coarsest.sum(dim=(2, 3))
        # Projection discriminator (Miyato & Koyama 2018): an unconditional score plus the
        # inner product of the features with the class embedding.
        projection = (self.projection(labels) * pooled).sum(1)
        if self.conditioning != 1:
            projection = self.conditioning * projection
        if self.spec.colour_projection and colours is not None:
            projection = projection + (self.colour_projection(colours.to(pooled.dtype)) * pooled).sum(1)
        score = self.linear(pooled).squeeze(1) + projection
        # One tensor out, so that DistributedDataParallel sees it all: the score, then the class
        # head's logits, then the flattened reconstruction (see split_discriminator_output).
        heads = [score[:, None]]
        if self.spec.classifier_head:
            heads.append(self.classifier(pooled))
        if self.spec.reconstruction_head:
            heads.append(self.reconstructor(maps[self.reconstructor.source]).flatten(1))
        return torch.cat(heads, dim=1) if len(heads) > 1 else score


def with_minibatch_std(features: torch.Tensor, group: int) -> torch.Tensor:
    """``features`` (N, C, H, W) with one more channel: ProGAN's minibatch standard deviation
    (Karras et al., ICLR 2018, section 3), the standard deviation of each feature over a group
    of ``group`` images, averaged over features and positions, one number per group.

    Groups are consecutive images (0..g-1, g..2g-1, ...), never strided as in ProGAN's code, so
    that the real half and the fake half of the batch gen.losses scores together never share
    a group (training checks that the group divides the batch). When ``group`` does not divide
    N (curation's last batch), the last group is the last ``group`` images; with fewer images
    than ``group`` the whole batch is one group. Computed in float32 under mixed precision.
    """
    n, _, height, width = features.shape
    group = min(group, n)
    starts = torch.arange(0, n, group, device=features.device).clamp(max=n - group)
    members = starts[:, None] + torch.arange(group, device=features.device)
    spread = features[members].float().var(dim=1, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    per_image = spread[torch.arange(n, device=features.device) // group].to(features.dtype)
    return torch.cat([features, per_image[:, None, None, None].expand(n, 1, height, width)], dim=1)


RECONSTRUCTION_SIZE = 32  # D's decoder draws the image at half size: cheap, and colour and layout show


class ReconstructionDecoder(nn.Module):
    """FastGAN's self-supervised decoder (Liu et al., ICLR 2021), its whole-image part: D's 8x8
    feature map (or its coarsest, if coarser) back to a 32x32 image by nearest x2 + conv3x3 +
    activation per doubling, then conv3x3 and tanh. Trained by an L1 loss on real images only, it
    makes D keep what a real image looks like in its features rather than only what separates
    it from this moment's fakes. FastGAN also decodes a random quarter crop, and scores with
    LPIPS; both are left out (no pretrained network is available here, and one decoder is
    cheaper on a CPU)."""

    def __init__(self, spec: DiscriminatorSpec):
        super().__init__()
        sizes = [64 // 2**index for index in range(len(spec.channels))]
        self.source = next((index for index, size in enumerate(sizes) if size <= 8), len(sizes) - 1)
        channels, size, layers = spec.channels[self.source], sizes[self.source], []
        while size < RECONSTRUCTION_SIZE:
            out = max(channels // 2, 8)
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                sn_conv(channels, out, 3, spectral=spec.spectral_norm),
                activation(spec.activation),
            ]
            channels, size = out, size * 2
        layers += [sn_conv(channels, 3, 3, spectral=spec.spectral_norm), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def split_discriminator_output(
    out: torch.Tensor, reconstruction: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """D's output as (score, class logits or None, reconstruction or None)."""
    if out.dim() == 1:
        return out, None, None
    image = None
    if reconstruction:
        size = 3 * RECONSTRUCTION_SIZE**2
        image = out[:, -size:].reshape(-1, 3, RECONSTRUCTION_SIZE, RECONSTRUCTION_SIZE)
        out = out[:, :-size]
    return out[:, 0], (out[:, 1:] if out.size(1) > 1 else None), image


class AutoencoderDecoder(nn.Module):
    """BEGAN's decoder: the encoder's last feature map to a code (plus a class embedding, the
    conditioning), back to that map, then nearest x2 + conv3x3 + activation per encoder block."""

    CODE_SIZE = 64

    def __init__(self, spec: DiscriminatorSpec):
        super().__init__()
        widths = spec.channels
        size = 64 // 2 ** (len(widths) - 1)
        self.shape = (widths[-1], size, size)
        self.to_code = nn.Linear(widths[-1] * size * size, self.CODE_SIZE)
        self.class_code = nn.Embedding(spec.num_classes, self.CODE_SIZE)
        self.from_code = nn.Linear(self.CODE_SIZE, widths[-1] * size * size)
        reversed_widths = widths[::-1]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1),
                activation(spec.activation),
            )
            for c_in, c_out in zip(reversed_widths[:-1], reversed_widths[1:], strict=True)
        )
        self.to_image = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        code = self.to_code(features.flatten(1)) + self.class_code(labels)
        x = self.from_code(code).view(-1, *self.shape)
        for block in self.blocks:
            x = block(x)
        return self.to_image(x)


def set_conditioning(network: nn.Module, strength: float) -> None:
    """Scale every class signal of a network by ``strength`` in [0, 1]: the generator's
    conditional batch norms and its stem's one-hot label, the discriminator's projection term.
    Transitional conditioning (Shahbazi et al., ICLR 2022) trains from 0 (unconditional) and
    ramps to 1, so that a few hundred images per class do not collapse the classes early;
    sampling always runs at 1, the value every network starts with."""
    for module in network.modules():
        if isinstance(module, ClassConditionalBatchNorm | Generator | Discriminator):
            module.conditioning = strength


def build(spec: GeneratorSpec | DiscriminatorSpec | dict) -> Generator | Discriminator:
    """The network a spec (or its JSON) describes."""
    if isinstance(spec, dict):
        spec = from_json(spec)
    return Generator(spec) if isinstance(spec, GeneratorSpec) else Discriminator(spec)


def architecture_json(network: Generator | Discriminator) -> dict:
    return to_json(network.spec)
