"""The law as data: provision files, the named-check library, agreements, the evaluator."""
