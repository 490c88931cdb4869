"""Bridle image plugin."""
