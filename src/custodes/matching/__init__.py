"""Matching: standardization, the linkage model, candidate ranking, address confirmation."""
