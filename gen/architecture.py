"""Architectures as data.

A network is described by a frozen dataclass that serialises to JSON; that JSON is what the
database stores in ``gan_architectures.generator`` / ``.discriminator`` and what
``gen.networks`` builds a network from. Whatever the database says was trained can be rebuilt
from the database alone, and the architecture search can mutate a spec without touching code.

Cells use the source method's encoding ``{N, C, [ATTN]}``: ``N`` nodes, ``C`` the operations
between nodes as dash-separated digit groups (group ``i`` holds the operations from node ``i``
to every later node), ``ATTN`` the 1-based indices of the cells followed by self-attention.
Node 1 is the cell's input, the last node its output, and every other node is the sum of
the operations on its incoming edges.

Reading of the source's cells (docs/source-method.md section 2), recorded here as the code's choice:
the tables write ``n2 = n1 + separable(n1)``, which one digit per edge cannot express; we read
the residual term as a skip from the cell input (node 1 -> node 3), which also gives the
generator cell the "two skips" and the discriminator cell the "three skips" the thesis states.
Edges the thesis does not describe are zero. Every convolution operation is
``conv -> activation -> batch norm`` (conditional batch norm in the generator).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any, Literal

from gen.errors import GenError

OPERATIONS: dict[str, str] = {
    "1": "conv1x1",
    "2": "conv3x3",
    "3": "conv5x5",
    "4": "separable_conv3x3",
    "5": "zero",
    "6": "skip",
    "7": "max_pool3x3",
    "8": "avg_pool3x3",
}
GENERATOR_OPERATIONS = frozenset("123456")  # pooling would blur what the generator paints
DISCRIMINATOR_OPERATIONS = frozenset(OPERATIONS)


@dataclass(frozen=True)
class CellSpec:
    """A cell of ``nodes`` nodes wired by ``code`` (e.g. ``"262-42-6"`` for 4 nodes)."""

    nodes: int
    code: str

    def __post_init__(self) -> None:
        groups = self.code.split("-")
        expected = [self.nodes - 1 - i for i in range(self.nodes - 1)]
        if not 3 <= self.nodes <= 5 or [len(g) for g in groups] != expected:
            raise GenError(
                f"cell code {self.code!r} does not fit {self.nodes} nodes "
                f"(expected digit groups of lengths {expected})."
            )
        unknown = set(self.code.replace("-", "")) - set(OPERATIONS)
        if unknown:
            raise GenError(f"cell code {self.code!r} uses unknown operation digits {sorted(unknown)}.")

    def edges(self) -> list[tuple[int, int, str]]:
        """``(source, target, operation)`` for every edge, nodes numbered from 0 (the input)."""
        result = []
        for source, group in enumerate(self.code.split("-")):
            for offset, digit in enumerate(group):
                result.append((source, source + 1 + offset, OPERATIONS[digit]))
        return result


@dataclass(frozen=True)
class GeneratorSpec:
    """Noise (and a class label) in, a 64x64x3 image in [-1, 1] out.

    ``channels[0]`` is the 4x4 stem; each later entry is one upsampling block, so five entries
    reach 64x64. A stage follows the stem and every upsampling block but the last: the cell
    with its residual sum (when there is a cell), and self-attention where ``attention`` lists
    the stage (1-based).
    """

    num_classes: int
    channels: tuple[int, ...]
    cell: CellSpec | None
    attention: tuple[int, ...] = ()
    noise_dim: int = 128
    upsample: Literal["nearest_conv_glu", "nearest_conv", "transposed_conv"] = "nearest_conv_glu"
    activation: Literal["elu", "relu"] = "elu"
    spectral_norm: bool = True
    # How the 3x3 convolutions pad: zeros tell every layer where the border is, and a generator
    # learns to draw it (a faint frame a few pixels inside every tile); reflect does not.
    padding: Literal["zeros", "reflect"] = "zeros"
    # FastGAN's skip-layer excitation (Liu et al., ICLR 2021): the 4x4 and 8x8 maps gate the
    # channels of the maps eight times larger (32x32 and 64x64 for 64x64 images).
    skip_excitation: bool = False
    # The last layer: tanh; linear (StyleGAN's), which sampling clamps to [-1, 1]; or clamp
    # (hardtanh), which clips in training too, as the camera does, so D sees the same ceiling in
    # real and synthetic images. Bright-field smears clip: a third of some classes' red pixels are
    # 253-255, which tanh reaches only at large pre-activations, so a tanh generator puts that
    # mass a few levels lower.
    output: Literal["tanh", "linear", "clamp"] = "tanh"
    # A per-image colour transform from the noise before the last layer's activation: each
    # channel scaled by 1 + a(z) and shifted by b(z), a and b linear in z and zero at the start.
    # Stain and light differ from slide to slide, so real smears differ in colour image to image;
    # this gives that variation one direct path instead of the whole network.
    colour_style: bool = False
    # Slide colour drawn from the training images (``--colour-condition``): the generator holds
    # every training image's colour (its per-channel mean and standard deviation, six numbers)
    # in a bank of this many slots per class, 0 for none. Each image it draws takes the colour
    # of one training image of its class, picked by its noise (the first number's normal
    # quantile), as six more inputs beside the noise; so the slides' colours, rare stains
    # included, are drawn as often as they occur in training. The bank's size is the largest
    # class's image count.
    colour_bank: int = 0
    # Which pixels a colour is measured on (gen.networks.colour_statistics): "image", all of
    # them; "border", the outer eighth of each side, where a centred cell rarely reaches, so the
    # colour is the slide's stain and light more than the cell's kind (a basophil's dark granules
    # raise its whole image's spread, and G then reads the class from the colour).
    colour_region: Literal["image", "border"] = "image"
    # The class at the stem too: a one-hot label beside the noise (and colour) into the 4x4
    # stem, so the class shapes the cell from the first layer, not only through the batch norms'
    # gains. A colour given at the stem without it takes over which kind of cell is drawn
    # (docs/benchmarks.md, "where the basophils go").
    stem_label: bool = False
    kind: Literal["generator"] = "generator"

    @property
    def image_size(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)

    def encoding(self) -> str:
        return _encoding(self.cell, self.attention)


@dataclass(frozen=True)
class DiscriminatorSpec:
    """A 64x64x3 image and its label in, one realness score out (projection conditioning).

    ``channels[0]`` is the stem at full resolution; each later entry is one downsampling
    block. A stage (the cell with its residual sum when there is a cell, self-attention where
    listed) precedes every downsampling. ``norm`` is the batch norm of the cells and strided
    blocks, or none. ``head`` is a projection score (Miyato & Koyama 2018), or an autoencoder
    whose reconstruction BEGAN scores (the decoder mirrors the encoder's widths).
    """

    num_classes: int
    channels: tuple[int, ...]
    cell: CellSpec | None
    attention: tuple[int, ...] = ()
    downsample: Literal["space_to_depth", "strided_conv"] = "space_to_depth"
    activation: Literal["elu", "leaky_relu"] = "elu"
    spectral_norm: bool = True
    norm: Literal["batch", "none"] = "batch"
    head: Literal["projection", "autoencoder"] = "projection"
    # An auxiliary class head beside the projection score (AC-GAN, Odena et al. 2017): its
    # logits follow the score in D's output, (N, 1 + classes), for gen.losses' --classifier-weight.
    classifier_head: bool = False
    # FastGAN's self-supervised decoder (Liu et al., ICLR 2021): D's 8x8 map decoded to a 32x32
    # image, which follows the score (and logits) in D's output for --reconstruction-weight.
    reconstruction_head: bool = False
    # ProGAN's minibatch standard deviation (Karras et al., ICLR 2018, section 3): the group
    # size, 0 for none. Each image's coarsest map gains one channel, how much the features of its
    # group of consecutive images in the batch vary, then a conv3x3 back to the width; D can then
    # tell a batch of fakes that vary too little from a real batch, which one image cannot show.
    minibatch_std: int = 0
    # Instance conditioning on colour (IC-GAN, Casanova et al. 2021, on six numbers): the score
    # gains the inner product of the pooled features with a linear map of an image's colour
    # (gen.networks.colour_statistics, standardised by the generator's colour bank): a real image's
    # own colour, the colour a fake was asked for. D then judges whether an image has the colour
    # it claims, as the projection judges its class; it needs a generator with a colour bank.
    colour_projection: bool = False
    kind: Literal["discriminator"] = "discriminator"

    def encoding(self) -> str:
        return _encoding(self.cell, self.attention)


def _encoding(cell: CellSpec | None, attention: tuple[int, ...]) -> str:
    if cell is None:
        return f"no cells, attention [{', '.join(map(str, attention))}]" if attention else "no cells"
    return f"{{{cell.nodes}, {cell.code}, [{', '.join(map(str, attention))}]}}"


# Bounds on what a spec may ask for, checked before any network is built: a spec may come from a
# checkpoint or a database row anyone could have written, and 200,000 channels would exhaust any
# machine's memory before torch said anything. The widest preset layer is 1024 wide.
MAX_CHANNELS = 4096
MAX_MINIBATCH_GROUP = 64
MAX_NOISE_DIM = 4096
MAX_CLASSES = 10_000
MAX_COLOUR_BANK = 4_000_000  # colour slots over all classes: 96 MB of float32
MAX_BLOCKS = 5  # channel widths: the stem and four blocks make the 64x64 images gen trains on


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def minibatch_group_allowed(group: Any) -> bool:
    """A minibatch-std group size is 0 (off) or a whole 2..MAX_MINIBATCH_GROUP (spec and CLI)."""
    return _whole(group) and (group == 0 or 2 <= group <= MAX_MINIBATCH_GROUP)


def _check_bounds(spec: GeneratorSpec | DiscriminatorSpec) -> None:
    """GenError unless every number and choice of the spec is of its type and within its bounds."""
    hints = typing.get_type_hints(type(spec))
    for field in dataclasses.fields(spec):
        value, hint = getattr(spec, field.name), hints[field.name]
        if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
            choices = ", ".join(map(str, typing.get_args(hint)))
            raise GenError(f"the {spec.kind}'s {field.name} must be one of {choices}, not {value!r}.")
    switches = (
        "spectral_norm",
        "skip_excitation",
        "colour_style",
        "stem_label",
        "classifier_head",
        "reconstruction_head",
        "colour_projection",
    )
    for name in switches:
        value = getattr(spec, name, False)
        if not isinstance(value, bool):
            raise GenError(f"the {spec.kind}'s {name} must be true or false, not {value!r}.")
    if not _whole(spec.num_classes) or not 2 <= spec.num_classes <= MAX_CLASSES:
        raise GenError(f"the {spec.kind} needs 2 to {MAX_CLASSES} classes, not {spec.num_classes!r}.")
    if not 2 <= len(spec.channels) <= MAX_BLOCKS or not all(
        _whole(width) and 1 <= width <= MAX_CHANNELS for width in spec.channels
    ):
        raise GenError(
            f"the {spec.kind} needs 2 to {MAX_BLOCKS} channel widths of 1 to {MAX_CHANNELS}, "
            f"not {list(spec.channels)!r}."
        )
    if not all(_whole(index) for index in spec.attention):
        raise GenError(f"the {spec.kind}'s attention must list stage numbers, not {list(spec.attention)!r}.")
    group = getattr(spec, "minibatch_std", 0)
    if not minibatch_group_allowed(group):
        raise GenError(
            f"the discriminator's minibatch_std must be 0 (off) or a group of 2 to {MAX_MINIBATCH_GROUP} "
            f"images, not {group!r}."
        )
    if group and spec.head != "projection":
        raise GenError("the discriminator's minibatch_std needs a projection head (not BEGAN's autoencoder).")
    if getattr(spec, "colour_projection", False) and spec.head != "projection":
        raise GenError(
            "the discriminator's colour_projection needs a projection head (not BEGAN's autoencoder)."
        )
    bank = getattr(spec, "colour_bank", 0)
    if not _whole(bank) or bank < 0 or bank * spec.num_classes > MAX_COLOUR_BANK:
        raise GenError(
            f"the generator's colour_bank must be 0 (none) or a number of slots per class, at most "
            f"{MAX_COLOUR_BANK:,} in all, not {bank!r}."
        )
    noise_dim = getattr(spec, "noise_dim", 1)
    if not _whole(noise_dim) or not 1 <= noise_dim <= MAX_NOISE_DIM:
        raise GenError(f"the generator's noise size must be 1 to {MAX_NOISE_DIM}, not {noise_dim!r}.")


def _validate(spec: GeneratorSpec | DiscriminatorSpec) -> None:
    _check_bounds(spec)
    allowed = GENERATOR_OPERATIONS if spec.kind == "generator" else DISCRIMINATOR_OPERATIONS
    if spec.cell is not None and not set(spec.cell.code.replace("-", "")) <= allowed:
        raise GenError(f"the {spec.kind} cell {spec.cell.code!r} uses operations a {spec.kind} cannot have.")
    stages = len(spec.channels) - 1
    if any(not 1 <= index <= stages for index in spec.attention):
        raise GenError(f"{spec.kind} attention indices {list(spec.attention)} must name stages 1..{stages}.")
    if spec.num_classes < 2 or len(spec.channels) < 2 or min(spec.channels) < 1:
        raise GenError(f"the {spec.kind} needs at least 2 classes and 2 positive channel widths.")


def to_json(spec: GeneratorSpec | DiscriminatorSpec) -> dict[str, Any]:
    """The JSON object stored in the database (plain dicts, lists and scalars)."""
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def from_json(data: dict[str, Any] | str) -> GeneratorSpec | DiscriminatorSpec:
    """Inverse of :func:`to_json`; accepts the dict or its JSON text."""
    try:
        fields = dict(json.loads(data) if isinstance(data, str) else data)
    except (TypeError, ValueError):
        raise GenError("architecture JSON is not a JSON object.") from None
    kinds = {"generator": GeneratorSpec, "discriminator": DiscriminatorSpec}
    spec_class = kinds.get(fields.get("kind")) if isinstance(fields.get("kind"), str) else None
    if spec_class is None:
        raise GenError(f"architecture JSON has unknown kind {fields.get('kind')!r}.")
    try:
        fields["channels"] = tuple(fields["channels"])
        fields["attention"] = tuple(fields.get("attention", ()))
        fields["cell"] = CellSpec(**fields["cell"]) if fields.get("cell") else None
        spec = spec_class(**fields)
    except KeyError as error:
        raise GenError(f"architecture JSON does not describe a {fields['kind']}: no {error} field.") from None
    except (TypeError, ValueError, AttributeError) as error:
        raise GenError(f"architecture JSON does not describe a {fields['kind']}: {error}.") from None
    _validate(spec)
    return spec


# The source method's searched cells (see the module docstring for how they were read).
PAPER_GENERATOR_CELL = CellSpec(nodes=4, code="262-42-6")
PAPER_DISCRIMINATOR_CELL = CellSpec(nodes=5, code="2656-455-88-6")

# Channel widths per preset: one topology, narrower for smaller machines.
_PRESET_CHANNELS = {
    "paper": ((1024, 1024, 512, 256, 128), (64, 128, 256, 512, 1024)),
    "small": ((512, 512, 256, 128, 64), (32, 64, 128, 256, 512)),
    "tiny": ((64, 64, 32, 16, 16), (8, 16, 32, 64, 64)),
}
# The source's five baselines (docs/source-method.md section 4); gen.presets holds their training.
BASELINES = ("dcgan", "wgan", "wgan-gp", "bgan", "began")
PRESETS = (*_PRESET_CHANNELS, "cpu", "reference", *BASELINES)


def _baseline(name: str, num_classes: int) -> tuple[GeneratorSpec, DiscriminatorSpec]:
    """DCGAN's topology (Radford et al. 2015) for the baselines, class-conditional in the one way
    every preset is: class-conditional batch norm in G, a projection head in D.

    No spectral norm (none of the five papers uses it). WGAN-GP's critic has no batch norm
    (Gulrajani et al. 2017: it would break the per-sample gradient penalty); BEGAN's
    discriminator is an autoencoder (Berthelot et al. 2017) with ELU and no batch norm.
    """
    dcgan_generator = GeneratorSpec(
        num_classes,
        (512, 256, 128, 64, 32),
        None,
        upsample="transposed_conv",
        activation="relu",
        spectral_norm=False,
    )
    if name == "began":
        generator = GeneratorSpec(
            num_classes,
            (128, 128, 64, 64, 32),
            None,
            upsample="nearest_conv",
            activation="elu",
            spectral_norm=False,
        )
        discriminator = DiscriminatorSpec(
            num_classes,
            (32, 64, 64, 128, 128),
            None,
            downsample="strided_conv",
            activation="elu",
            spectral_norm=False,
            norm="none",
            head="autoencoder",
        )
        return generator, discriminator
    discriminator = DiscriminatorSpec(
        num_classes,
        (32, 64, 128, 256, 512),
        None,
        downsample="strided_conv",
        activation="leaky_relu",
        spectral_norm=False,
        norm="none" if name == "wgan-gp" else "batch",
    )
    return dcgan_generator, discriminator


def preset(name: str, num_classes: int) -> tuple[GeneratorSpec, DiscriminatorSpec]:
    """The generator and discriminator of a named preset for ``num_classes`` classes.

    - ``paper``, ``small``, ``tiny``: the source's searched cells at full, 1/2 and 1/16 width.
    - ``reference``: the plain class-conditional GAN the quality issue measured as the bar on a
      2-core CPU: nearest-upsample + 3x3 conv blocks (256..16) with conditional batch norm and
      ReLU; four spectrally normalised stride-2 4x4 convolutions (32..256) with LeakyReLU 0.2.
    - ``cpu``: ours for the CPU: the reference's fast blocks plus self-attention at 16x16 in
      both networks (SAGAN places it at 32x32 or below), reflection padding in G's
      convolutions and a linear last layer in G (sampling clamps), see docs/benchmarks.md.
    - ``dcgan``, ``wgan``, ``wgan-gp``, ``bgan``, ``began``: the source's baselines.
    """
    if name in _PRESET_CHANNELS:
        generator_channels, discriminator_channels = _PRESET_CHANNELS[name]
        generator = GeneratorSpec(num_classes, generator_channels, PAPER_GENERATOR_CELL, attention=(3, 4))
        discriminator = DiscriminatorSpec(
            num_classes, discriminator_channels, PAPER_DISCRIMINATOR_CELL, attention=(1, 2)
        )
    elif name in ("cpu", "reference"):
        attention = (3,) if name == "cpu" else ()
        generator = GeneratorSpec(
            num_classes,
            (256, 128, 64, 32, 16),
            None,
            attention=attention,
            upsample="nearest_conv",
            activation="relu",
            # ours pads by reflection (no frame; docs/benchmarks.md, ablations); the reference
            # stays the plain network the quality issue measured
            padding="reflect" if name == "cpu" else "zeros",
            # ours reaches the clipped red of a bright-field smear (docs/benchmarks.md, the red
            # channel); the reference keeps its tanh
            output="linear" if name == "cpu" else "tanh",
        )
        discriminator = DiscriminatorSpec(
            num_classes,
            (16, 32, 64, 128, 256),
            None,
            attention=attention,
            downsample="strided_conv",
            activation="leaky_relu",
            norm="none",
        )
    elif name in BASELINES:
        generator, discriminator = _baseline(name, num_classes)
    else:
        raise GenError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    _validate(generator)
    _validate(discriminator)
    return generator, discriminator
