"""Widgets shared by several features: plots, legends, tables, exports.

Nothing here knows a feature; features build their tabs from these.
"""
