# The vector table and reset handler (core-firmware src/startup/build.mk format).
TARGET_STARTUP_PATH = src/startup

ASRC += $(TARGET_STARTUP_PATH)/startup_stm32f10x_md.S
