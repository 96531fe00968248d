"""Measuring: grid profiles, data, timing, the memory sweep, the grid runner and its workers, the studies."""
