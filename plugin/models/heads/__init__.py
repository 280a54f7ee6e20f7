"""Projection heads and adapters put on top of encoders."""
