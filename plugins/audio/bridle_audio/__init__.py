"""Bridle audio plugin."""
