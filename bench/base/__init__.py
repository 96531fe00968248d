"""The base layer: types, constants and file formats that measure, analyse and present share.

It imports only implementations (for the registry's facts), never a stage above it.
"""
