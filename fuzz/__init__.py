"""Coverage-guided fuzzing of every parser that takes outside input (issue #26, item 4)."""
