"""Replay: the real arithmetic of training, walked along a timeline."""
