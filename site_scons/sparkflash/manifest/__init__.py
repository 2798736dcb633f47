"""Release manifests: YAML in, canonical signed JSON + content-addressed blobs out."""

from sparkflash.manifest.model import FORMAT, Manifest, Region
from sparkflash.manifest.release import Release, open_release

__all__ = ["FORMAT", "Manifest", "Region", "Release", "open_release"]
