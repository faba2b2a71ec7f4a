"""Workflows that measure and then compute: named data sets, quickstart, evaluation, calibration.

These sit above every stage: they measure through ``prmodel.measure`` and then select, train
or estimate; the stages below never measure by themselves.
"""
