"""Analysing the tidy table: derived views, the cost model, the verdict rules, runs side by side."""
