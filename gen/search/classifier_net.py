"""The network of a classifier-search genome (gen.search.space.ClassifierGenome).

Reading of the source's classifier (docs/source-method.md section 3: "5 cells with pooling after
cell 1, 32 channels"): a 64x64 RGB image goes through a stem (conv3x3 to 32 channels, batch
norm, ELU), then ``cells`` cells, each the genome's cell (gen.networks.Cell: a node is the sum of
its incoming edges' operations; convolutions are conv -> ELU -> batch norm, no spectral norm)
added to its input (the residual sum the source's GAN cells use), a 2x2 average pooling after
every cell listed in ``pool``, then global average pooling to 32 features, dropout and a linear
layer to K classes. Every cell keeps 32 channels.

The module has the interface of gen.metrics.domain.DomainClassifier (``config`` with
``num_classes``, ``feature_dim`` and ``to_dict``; ``features``; ``classifier``; ``body``, whose
last module Grad-CAM explains), so domain.train_domain_classifier,
domain_features_and_probabilities and Grad-CAM work on it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gen.errors import GenError
from gen.networks import BatchNorm, Cell
from gen.search.space import ClassifierGenome, ClassifierSpace

CHANNELS = 32
ARCHITECTURE_KIND = "searched_classifier"  # classifiers.architecture["kind"] of these networks
SAVE_FORMAT = "gen-searched-classifier-1"


@dataclass(frozen=True)
class SearchedClassifierConfig:
    num_classes: int
    genome: ClassifierGenome
    channels: int = CHANNELS
    dropout: float = 0.2

    @property
    def feature_dim(self) -> int:
        return self.channels

    def to_dict(self) -> dict[str, Any]:
        """What classifiers.architecture holds: enough to rebuild the network."""
        return {
            "kind": ARCHITECTURE_KIND,
            "num_classes": self.num_classes,
            "channels": self.channels,
            "dropout": self.dropout,
            "notation": self.genome.notation(),
            **self.genome.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchedClassifierConfig:
        if data.get("kind") != ARCHITECTURE_KIND:
            raise GenError("this classifier was not found by gen search --stage classifier.")
        genome = ClassifierGenome.from_dict(data)
        if not ClassifierSpace().is_valid(genome):
            raise GenError(f"{genome.notation()} is not a valid classifier architecture.")
        return cls(int(data["num_classes"]), genome, int(data["channels"]), float(data["dropout"]))


class ResidualCell(nn.Module):
    def __init__(self, cell: Cell):
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cell(x, None)


class Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2)


class SearchedClassifier(nn.Module):
    def __init__(self, config: SearchedClassifierConfig):
        super().__init__()
        self.config = config
        width = config.channels
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ELU())
        ]
        for index in range(1, config.genome.cells + 1):
            layers.append(ResidualCell(Cell(config.genome.cell, width, "elu", BatchNorm, spectral=False)))
            if index in config.genome.pool:
                layers.append(Pool())
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(width, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


def build(genome: ClassifierGenome, num_classes: int, seed: int) -> SearchedClassifier:
    """A freshly initialised network; the same seed gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SearchedClassifier(SearchedClassifierConfig(num_classes, genome))


def save(model: SearchedClassifier, path: str | Path) -> None:
    from gen.checkpoint import atomic_write

    state = {
        "format": SAVE_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
    }
    atomic_write(Path(path), lambda file: torch.save(state, file))


def load(
    path: str | Path, architecture: dict[str, Any], device: str | torch.device = "cpu"
) -> SearchedClassifier:
    """The network of ``architecture`` (a classifiers row's) with the weights in ``path``."""
    model = SearchedClassifier(SearchedClassifierConfig.from_dict(architecture))
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
    except Exception as error:  # a bad file raises many types; all mean the same here
        raise GenError(f"{path} does not hold this classifier's weights ({type(error).__name__}).") from error
    return model.to(device).eval()
