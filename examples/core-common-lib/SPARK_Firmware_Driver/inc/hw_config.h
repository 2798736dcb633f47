/* Board bring-up for the example: clocks, the RGB LED pins (PA1..PA3). */
#ifndef HW_CONFIG_H
#define HW_CONFIG_H

#ifdef __cplusplus
extern "C" {
#endif

enum led_colour { LED_OFF = 0, LED_RED = 1, LED_GREEN = 2, LED_BLUE = 4 };

void hw_init(void);
void led_set(enum led_colour colour);

#ifdef __cplusplus
}
#endif

#endif
