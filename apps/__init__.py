"""Game-specific apps built on the library: each one a command, ``python -m apps.<name>``.

- ``apps.versus``: play FlickerPong against a trained agent (docs/versus.md).
"""
