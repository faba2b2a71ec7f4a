"""Measuring layers on a target: sweep plans, the resumable SQLite store, the runner, rechecks.

Data flows one way: a plan names layers, the runner measures them on a target, the store
keeps every measurement with the target's fingerprint, and frames read them back.
"""
