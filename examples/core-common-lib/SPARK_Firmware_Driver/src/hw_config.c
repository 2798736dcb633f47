/* Board bring-up: the Core's RGB LED is on PA1 (red), PA2 (green), PA3 (blue), active low. */
#include "hw_config.h"
#include "hw_regs.h"

void hw_init(void)
{
    RCC_APB2ENR |= RCC_APB2ENR_IOPAEN | RCC_APB2ENR_IOPBEN;
    /* PA1..PA3: general-purpose push-pull outputs, 2 MHz (MODE=10, CNF=00). */
    GPIOA_CRL = (GPIOA_CRL & ~0x0000FFF0u) | 0x00002220u;
    led_set(LED_OFF);
}

void led_set(enum led_colour colour)
{
    uint32_t on = ((uint32_t)colour & 7u) << 1;
    uint32_t off = (~(uint32_t)colour & 7u) << 1;
    GPIOA_BSRR = off | (on << 16); /* set = LED off, reset = LED on */
}
