"""The config dir: YAML files -> validated, frozen model (see DESIGN sections 2 and 3).

Import what you need from its modules: :mod:`~b2bd.config.model` (the frozen value objects,
pure), :mod:`~b2bd.config.load` (the I/O shell: ``load_config``), and between them
:mod:`~b2bd.config.yamlfile`, :mod:`~b2bd.config.schema`, :mod:`~b2bd.config.rules` and
:mod:`~b2bd.config.build`. This package itself imports nothing, so the model costs no YAML or
JSON Schema import.
"""
