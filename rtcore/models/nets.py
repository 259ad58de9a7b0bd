"""Small architectures for the bundled backbones (trained by ``rtcore.train``)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Three conv blocks and a linear feature layer: 28x28 grayscale -> ``feature_dim`` features.

    ``forward_features`` gives the representation g(x); ``forward`` adds the upstream
    classifier used only during pretraining.
    """

    def __init__(self, in_chans: int = 1, width: int = 32, feature_dim: int = 128, num_classes: int = 5) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),  # 7x7
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),  # 4x4
        )
        self.fc = nn.Linear(2 * w * 16, feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.num_features = feature_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(self.body(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


ARCHS: dict[str, type[nn.Module]] = {"small-cnn": SmallCNN}
