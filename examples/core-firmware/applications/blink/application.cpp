// APP=blink: blinks the LED blue, a second application to show `scons APP=name`.
#include "data_region.h"

#include "hw_config.h"

void setup()
{
}

void loop()
{
    static uint32_t ticks;
    led_set((++ticks >> 18) & 1 ? LED_BLUE : LED_OFF);
}
