"""Connectors: one small class per endpoint ``type`` (DESIGN section 6).

- :mod:`~b2bd.connectors.source`: what every connector is (the ``Source`` interface, its
  failures and limits); light, so the pure core can name its types.
- :mod:`~b2bd.connectors.table`: which Source serves which endpoint (``open_source``,
  ``open_outbound``): everything that reads an endpoint gets its Source there.
- :mod:`~b2bd.connectors.directory`, :mod:`~b2bd.connectors.wonde` (with
  :mod:`~b2bd.connectors.credentials`): the connectors.

This package itself imports nothing.
"""
