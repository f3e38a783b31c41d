"""The load generator: scenarios as data, objects created, scaled and deleted at a pace.

It works against any cluster, hollow or real, and never imports `hollow`.
"""
