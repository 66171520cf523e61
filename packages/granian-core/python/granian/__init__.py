# Other granian-* distributions add modules to this package (granian.rsgi, granian.cli...).
__path__ = __import__('pkgutil').extend_path(__path__, __name__)

from ._granian import __version__  # noqa: E402
from ._loops import loops  # noqa: E402
from .server import Granian  # noqa: E402

__all__ = ['Granian', '__version__', 'loops']
