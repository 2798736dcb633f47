/* The agent's HAL for the libFuzzer harnesses: RAM flash with NOR rules and bound checks
 * that abort (a finding), a clock the harness moves, output thrown away. */
#ifndef SFA_FUZZ_HAL_H
#define SFA_FUZZ_HAL_H

#include <stdint.h>

void fuzz_hal_reset(void);        /* blank the sectors the last case touched */
void fuzz_hal_advance(uint32_t ms);

#endif
