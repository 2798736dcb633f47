# Sources of src/, in the format of the spark_11 core-firmware src/build.mk: every .cpp
# under src/, minus application.cpp when APP= names an application.
TARGET_SRC_PATH = src

INCLUDE_DIRS += inc

CSRC +=

CPPSRC += $(call target_files,src/,*.cpp)

ifdef NO_APPLICATION_CPP
CPPSRC := $(filter-out $(TARGET_SRC_PATH)/application.cpp,$(CPPSRC))
endif

ASRC +=
