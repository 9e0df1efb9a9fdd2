"""Variational autoencoder (Kingma & Welling 2014) with dense encoder and decoder."""

import math

import torch
from torch import nn

from src.catalog import check_fit
from src.models.inputs import activation_layer


def _dense_stack(width: int, hidden_size: int, num_layers: int, activation: str) -> tuple[nn.Sequential, int]:
    layers = []
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden_size), activation_layer(activation)]
        width = hidden_size
    return nn.Sequential(*layers), width


class VAE(nn.Module):
    """x -> encoder -> (mu, logvar) -> z = mu + sigma * eps -> decoder -> reconstruction.

    forward returns (reconstruction, mu, logvar): the reconstruction as logits
    with the input's shape (the ELBO loss applies BCE-with-logits or MSE to it),
    mu and logvar (B, latent_dim) for its KL term. z is sampled in training
    (the reparameterisation trick keeps it differentiable) and is mu in eval
    mode, so evaluation is deterministic. decode(z) generates from the prior.
    """

    def __init__(
        self,
        input_kind: str,
        input_shape: tuple[int, ...],
        output_size: int,
        vocab_size: int = 0,
        task: str = "reconstruction",
        hidden_size: int = 256,
        num_layers: int = 1,
        latent_dim: int = 16,
        activation: str = "relu",
    ):
        super().__init__()
        check_fit("vae", input_kind, task)
        self.input_shape = tuple(input_shape)
        size = math.prod(input_shape)
        self.encoder, width = _dense_stack(size, hidden_size, num_layers, activation)
        self.to_stats = nn.Linear(width, 2 * latent_dim)
        decoder, width = _dense_stack(latent_dim, hidden_size, num_layers, activation)
        self.decoder = nn.Sequential(*decoder, nn.Linear(width, size))

    def encode(self, x):
        mu, logvar = self.to_stats(self.encoder(x.flatten(1))).chunk(2, dim=-1)  # (B, Z) each
        return mu, logvar

    def decode(self, z):
        return self.decoder(z).view(-1, *self.input_shape)  # (B, *input_shape) logits

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu  # (B, Z)
        return self.decode(z), mu, logvar
