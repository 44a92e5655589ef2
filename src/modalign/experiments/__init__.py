"""Experiment protocols that tie data, methods and evaluation together (used by the CLI)."""

from modalign.experiments.clustering import LEARNED, METHODS, run_clustering

__all__ = ["LEARNED", "METHODS", "run_clustering"]
