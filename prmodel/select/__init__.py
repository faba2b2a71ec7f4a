"""Choosing what to measure: spaces, step detection, Performance Representatives, samplers.

Nothing here measures by itself: selection takes a callable that measures 1-D sweeps, and
samplers return layers for a plan.
"""
