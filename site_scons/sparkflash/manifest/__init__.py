"""Release manifests: YAML in, canonical signed JSON + content-addressed blobs out.

Submodules are imported where needed (`sparkflash.manifest.release`, `.build`, ...): the
SCons tools import this package on every `scons` run, and signing pulls in cryptography.
"""

from sparkflash.manifest.model import FORMAT, MANIFEST_NAME, SIGNATURE_NAME, Manifest, Region

__all__ = ["FORMAT", "MANIFEST_NAME", "SIGNATURE_NAME", "Manifest", "Region"]
