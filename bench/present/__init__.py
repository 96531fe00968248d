"""Presenting: plots and the report, drawn only from the tidy table and the metadata beside it."""
