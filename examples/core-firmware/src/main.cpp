// Entry point called by Reset_Handler: bring up the board and the SPI flash, then run
// the application's setup() once and loop() forever, as the Spark firmware does.
#include "data_region.h"

#include "hw_config.h"
#include "sst25vf_spi.h"

int main()
{
    hw_init();
    sFLASH_Init();
    setup();
    for (;;) {
        loop();
    }
}
