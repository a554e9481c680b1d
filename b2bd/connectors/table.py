"""The connector table: which :class:`~b2bd.connectors.source.Source` serves which endpoint.
Everything that reads an endpoint gets its Source here:

- :func:`open_source` maps a base's :class:`~b2bd.config.model.Endpoint` to its Source through
  ``SOURCES``, a table keyed by endpoint type; a new connector adds one entry.
- :func:`open_outbound` gives the LA's own changes for one base (what to-school tasks read),
  through ``OUTBOUND``, keyed by the LA store's type.

Factories do no I/O: the first ``manifest()`` or ``read()`` does.
"""

from __future__ import annotations

from collections.abc import Callable

from b2bd.config.model import Endpoint, Settings
from b2bd.connectors.directory import DirectorySource
from b2bd.connectors.source import ConnectorError, Source

SourceFactory = Callable[[Endpoint, str | None, Settings | None], Source]
OutboundFactory = Callable[[Settings, str], Source]


def _directory_source(
    endpoint: Endpoint, laestab: str | None, _settings: Settings | None
) -> Source:
    if endpoint.path is None:
        raise ConnectorError("internal", "directory endpoint without a path")
    return DirectorySource(endpoint.path, laestab=laestab)


def _wonde_source(endpoint: Endpoint, laestab: str | None, settings: Settings | None) -> Source:
    # Imported here: only a wonde base pays for httpx.
    from b2bd.connectors.wonde import open_wonde

    return open_wonde(endpoint, laestab, settings)


SOURCES: dict[str, SourceFactory] = {
    "directory": _directory_source,
    "wonde": _wonde_source,
}
"""Endpoint type -> factory(endpoint, expected LAESTAB or None, settings or None) of its
Source. Settings carry what a connector needs beyond its endpoint (b2bd.yaml's credential
fallbacks for the ``wonde`` token)."""


def open_source(
    endpoint: Endpoint, laestab: str | None = None, settings: Settings | None = None
) -> Source:
    """The Source for a base's endpoint; ``laestab``, when given, must match the export's.

    Raises ConnectorError("internal") for an endpoint type with no source registered, and
    whatever the factory raises (a ``wonde`` token that cannot be read: ``auth``).
    """
    factory = SOURCES.get(endpoint.type)
    if factory is None:
        raise ConnectorError("internal", f"no connector for endpoint type {endpoint.type!r}")
    return factory(endpoint, laestab, settings)


def _directory_outbound(settings: Settings, base_id: str) -> Source:
    below: tuple[str, ...]
    if settings.la_outbound is not None:
        root, below = settings.la_outbound, (base_id,)
    else:
        assert settings.la_store.path is not None  # a directory store has a path (schema)
        root, below = settings.la_store.path, ("outbound", base_id)
    return DirectorySource(root, below=below, laestab=base_id, require_services_manager=False)


OUTBOUND: dict[str, OutboundFactory] = {
    "directory": _directory_outbound,
}
"""LA store type -> factory(settings, base id) of the Source of the LA's changes for that base."""


def open_outbound(settings: Settings, base_id: str) -> Source:
    """The LA's own changes for one base, read like a school's export but with no SIMS behind
    it (no Services Manager required): ``<la outbound>/<base>/`` (b2bd.yaml
    ``la_store.outbound``, default ``<la_store>/outbound``). Nothing below the configured
    folder is followed if it is a symlink.

    Raises ConnectorError("internal") for an LA store type with no outbound reader.
    """
    factory = OUTBOUND.get(settings.la_store.type)
    if factory is None:
        raise ConnectorError(
            "internal", f"no outbound reader for LA store type {settings.la_store.type!r}"
        )
    return factory(settings, base_id)
