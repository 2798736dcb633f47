# Sources of this directory, in the format of the spark_11 core-communication-lib build.mk.
TARGET_SRC_PATH = src

INCLUDE_DIRS += $(TARGET_SRC_PATH)

CSRC += $(TARGET_SRC_PATH)/crc32.c

CPPSRC +=

ASRC +=
