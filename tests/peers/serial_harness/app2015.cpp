/* An application using the 2015 receiver library (ours): it includes Ymodem/Ymodem.h and
 * saves one file at a fixed address, as a user's loop() would. */
#include "Ymodem.h"

extern "C" bool harness_ymodem2015(Stream *s, uint32_t address) { return Ymodem_Serial_Flash_Update(s, address); }
