"""Evaluation beyond validation loss: reasoning primitives and their scoring."""
