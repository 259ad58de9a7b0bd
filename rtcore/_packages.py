"""Optional third-party packages: their names, pinned versions, install hints and availability.

A low-level home (no rtcore imports) so that any layer can ask "is it installed?" without
importing another layer: the attacks use pyautoattack's AutoAttack, the models use the ResNet-18
that ships inside the same package.
"""

from __future__ import annotations

import importlib.util
import sys

#: pyautoattack: AutoAttack (Croce & Hein, ICML 2020) and its example CIFAR-10 ResNet-18
AUTOATTACK_PACKAGE = "pyautoattack"
AUTOATTACK_VERSION = "0.2.0"
AUTOATTACK_INSTALL_HINT = f"pip install {AUTOATTACK_PACKAGE}=={AUTOATTACK_VERSION}"


def package_installed(name: str) -> bool:
    """Whether the top-level package ``name`` can be imported (found without importing it)."""
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken install, or a module with __spec__ None
        return False


def autoattack_available() -> bool:
    """Whether pyautoattack can be imported."""
    return package_installed(AUTOATTACK_PACKAGE)
