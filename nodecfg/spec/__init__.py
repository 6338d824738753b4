"""Spec (pure): the input format's models and loaders."""
