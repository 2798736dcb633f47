# Shared by the example's two library makefiles (as core-common-lib's and
# core-communication-lib's build/makefile): every build.mk below the library root names
# sources; the including makefile sets TARGET, INCLUDE_DIRS and LIBFLAGS first.
GCC_PREFIX ?= arm-none-eabi-
CC = $(GCC_PREFIX)gcc
AR = $(GCC_PREFIX)ar
rwildcard = $(wildcard $1$2) $(foreach d,$(wildcard $1*),$(call rwildcard,$d/,$2))
SRC_PATH = ..
BUILD_PATH = obj

include $(call rwildcard,$(SRC_PATH)/,build.mk)

CFLAGS = -g3 -gdwarf-2 -Os -mcpu=cortex-m3 -mthumb
CFLAGS += $(patsubst %,-I$(SRC_PATH)/%,$(INCLUDE_DIRS)) -I.
CFLAGS += $(LIBFLAGS)
CFLAGS += -MD -MP -MF $@.d
ifeq ("$(USE_SWD_JTAG)","y")
CFLAGS += -DUSE_SWD_JTAG
endif
ifeq ("$(DEBUG_BUILD)","y")
CFLAGS += -DDEBUG_BUILD
else
CFLAGS += -DRELEASE_BUILD
endif
CPPFLAGS = -fno-exceptions -fno-rtti

ALLOBJ = $(addprefix $(BUILD_PATH)/,$(CSRC:.c=.o) $(CPPSRC:.cpp=.o))

all: $(TARGET)
$(TARGET): $(ALLOBJ)
	$(AR) -r $@ $^
$(BUILD_PATH)/%.o: $(SRC_PATH)/%.c
	mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<
$(BUILD_PATH)/%.o: $(SRC_PATH)/%.cpp
	mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CPPFLAGS) -c -o $@ $<
clean:
	rm -rf $(BUILD_PATH) $(TARGET)
.PHONY: all clean
.SECONDARY:
-include $(ALLOBJ:.o=.o.d)
