"""File input and output that every layer may use: reading checkpoints without running their code."""
from .checkpoints import read_checkpoint, rng_state_for_checkpoint, restore_rng_state

__all__ = ["read_checkpoint", "restore_rng_state", "rng_state_for_checkpoint"]
