"""Downstream evaluation of selections (optional extra ``geal[eval]``).

Submodules import their heavy dependencies themselves; importing this package is cheap.
"""
