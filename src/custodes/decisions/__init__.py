"""Decisions: the pipeline that combines rules and matching into outcomes; review; release."""
