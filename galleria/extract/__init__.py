"""Streaming extraction of activations."""
