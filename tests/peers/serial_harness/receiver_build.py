"""Build the Spark Core's real serial receivers for the host, from ../shared/peers.

The peer archives are unpacked into a temporary directory; the files the receiver needs
are placed side by side there (so their own hw_config.h, full of STM32 registers, is never
seen) and a few functions that live in very large files (FLASH_Begin/Update/End in
hw_config.c, System.serialSaveFile/serialFirmwareUpdate in spark_utilities.cpp,
HAL_FLASH_* in the 2015 ota_flash_hal.c) are cut out of those files at build time, with
#line markers pointing back at the original. Nothing of theirs is stored in this project.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ARCHIVES = {
    "firmware": ("core-firmware-flasher.tar.gz", "core-firmware"),
    "common": ("core-common-lib-flasher.tar.gz", "core-common-lib"),
    "fw2015": ("core-firmware-ymodem2015.tar.gz", "core-firmware"),
}

# (archive key, path inside it) copied unchanged beside each other
COPIED = [
    ("firmware", "src/spark_flasher_ymodem.cpp"),
    ("firmware", "inc/spark_flasher_ymodem.h"),
    ("firmware", "src/wifi_credentials_reader.cpp"),
    ("firmware", "inc/wifi_credentials_reader.h"),
    ("common", "SPARK_Firmware_Driver/src/sst25vf_spi.c"),
    ("common", "SPARK_Firmware_Driver/inc/sst25vf_spi.h"),
    ("fw2015", "main/libraries/Ymodem/Ymodem.h"),
    ("fw2015", "hal/inc/ota_flash_hal.h"),
]

# (archive key, file, output name, prelude, function signatures cut out of it)
EXTRACTED = [
    ("common", "SPARK_Firmware_Driver/src/hw_config.c", "peer_hw_config.c",
     '#include "hw_config.h"\n#include "sst25vf_spi.h"\n',
     ["uint32_t FLASH_PagesMask(", "void FLASH_Begin(", "uint16_t FLASH_Update(", "void FLASH_End("]),
    ("firmware", "src/spark_utilities.cpp", "peer_spark_utilities.cpp",
     '#include "spark_wiring.h"\n#include "spark_flasher_ymodem.h"\n',
     ["void SystemClass::serialSaveFile(", "void SystemClass::serialFirmwareUpdate("]),
    ("fw2015", "hal/src/core-v1/ota_flash_hal.c", "peer_ota_flash_hal.c",
     '#include "ota_flash_hal.h"\n#include "hw_config.h"\n',
     ["bool HAL_FLASH_CheckValidAddressRange(", "void HAL_FLASH_Begin(", "uint16_t HAL_FLASH_Update("]),
]
OURS = ["harness.cpp", "app2015.cpp"]


def peers_dir() -> Path | None:
    """../shared/peers beside the checkout (or $SPARKFLASH_PEERS), if it is there."""
    for cand in (os.environ.get("SPARKFLASH_PEERS"), ROOT.parent / "shared" / "peers"):
        if cand and (Path(cand) / ARCHIVES["firmware"][0]).is_file():
            return Path(cand)
    return None


def cut_function(text: str, signature: str, origin: str) -> str:
    """The definition starting at `signature` (at a line start), up to its matching brace."""
    m = re.search(r"^" + re.escape(signature), text, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"{origin}: no definition starting {signature!r}")
    open_at = text.index("{", m.start())
    depth, i = 0, open_at
    while True:
        c = text[i]
        depth += c == "{"
        depth -= c == "}"
        i += 1
        if depth == 0:
            break
    line = text.count("\n", 0, m.start()) + 1
    return f'#line {line} "{origin}"\n{text[m.start():i]}\n'


def build(out: Path, peers: Path) -> Path:
    """Unpack, assemble and compile into out/; returns the executable."""
    src = out / "unpacked"
    for key, (archive, top) in ARCHIVES.items():
        dest = src / key
        if not (dest / top).is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(peers / archive) as tf:
                tf.extractall(dest, filter="data")
    peer = out / "peer"
    peer.mkdir(parents=True, exist_ok=True)
    for key, rel in COPIED:
        shutil.copyfile(src / key / ARCHIVES[key][1] / rel, peer / Path(rel).name)
    for key, rel, name, prelude, sigs in EXTRACTED:
        path = src / key / ARCHIVES[key][1] / rel
        text = path.read_text(encoding="latin-1")
        (peer / name).write_text(prelude + "".join(cut_function(text, s, str(path)) for s in sigs))
    objs: list[Path] = []
    inc = ["-I", str(HERE / "shim"), "-I", str(peer)]
    units = [(HERE / n, True) for n in OURS] + [
        (peer / n, False) for n in ("spark_flasher_ymodem.cpp", "wifi_credentials_reader.cpp", "sst25vf_spi.c",
                                    "peer_hw_config.c", "peer_spark_utilities.cpp", "peer_ota_flash_hal.c")]
    for unit, ours in units:
        cc = ["g++", "-std=gnu++11"] if unit.suffix == ".cpp" else ["gcc", "-std=gnu99"]
        cc.append("-funsigned-char")  # as arm-none-eabi-gcc: the id printer depends on it
        warn = ["-Wall", "-Wextra", "-Werror"] if ours else ["-w"]
        obj = out / (unit.name + ".o")
        subprocess.run([*cc, "-O1", "-g", *warn, *inc, "-c", str(unit), "-o", str(obj)], check=True,
                       capture_output=True, text=True)
        objs.append(obj)
    exe = out / "spark-serial-receiver"
    subprocess.run(["g++", "-o", str(exe), *map(str, objs)], check=True, capture_output=True, text=True)
    return exe
