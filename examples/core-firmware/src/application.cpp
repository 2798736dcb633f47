// Default application: green LED if the external-flash data region checks out, red if not.
#include "data_region.h"

#include "hw_config.h"

uint32_t data_length;
data_status data_state;

void setup()
{
    data_state = data_region_check(DATA_REGION_ADDRESS, &data_length);
    led_set(data_state == DATA_OK ? LED_GREEN : LED_RED);
}

void loop()
{
}
