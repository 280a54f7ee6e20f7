"""Tests of the dataset classes and the upstream dataset overrides."""
