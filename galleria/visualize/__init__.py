"""Turns extracted activations into pictures: receptive fields, cropped tiles, heatmaps."""
