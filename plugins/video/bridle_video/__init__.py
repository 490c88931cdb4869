"""Bridle video plugin."""
