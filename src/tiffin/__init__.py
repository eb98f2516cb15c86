"""tiffin: sealed, versioned, content-addressed model packages."""
from __future__ import annotations

__version__ = "0.1.0"
