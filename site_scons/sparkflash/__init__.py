"""sparkflash: one pipeline to build, lay out, sign, publish and flash Spark Core releases.

Firmware and data blobs for internal and external flash are described by a signed
multi-region manifest and deployed unchanged by DFU (DfuSe), serial (YMODEM) or OTA.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
