# Sources of this directory, in the format of the spark_11 core-common-lib build.mk files
# (included by ../../build/makefile; scons reads the result through make -n).
TARGET_SPARK_PATH = SPARK_Firmware_Driver
TARGET_SPARK_SRC_PATH = $(TARGET_SPARK_PATH)/src

INCLUDE_DIRS += $(TARGET_SPARK_PATH)/inc

CSRC += $(TARGET_SPARK_SRC_PATH)/hw_config.c
CSRC += $(TARGET_SPARK_SRC_PATH)/sst25vf_spi.c

CPPSRC +=

ASRC +=
