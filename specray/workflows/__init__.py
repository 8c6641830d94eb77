"""Workflows: the stages composed end to end (the demo, scheduled retraining)."""
