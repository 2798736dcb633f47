/* Minimal SST25VF016B reader: READ (0x03) with a 24-bit address, SPI mode 3, polled. */
#include "sst25vf_spi.h"
#include "hw_regs.h"

static uint8_t spi_transfer(uint8_t out)
{
    while (!(SPI2_SR & SPI_SR_TXE)) {
    }
    SPI2_DR = out;
    while (!(SPI2_SR & SPI_SR_RXNE)) {
    }
    return (uint8_t)SPI2_DR;
}

void sFLASH_Init(void)
{
    RCC_APB2ENR |= RCC_APB2ENR_IOPBEN;
    RCC_APB1ENR |= RCC_APB1ENR_SPI2EN;
    /* PB9 CS: output push-pull; PB13/PB15: alternate push-pull; PB14: floating input. */
    GPIOB_CRH = (GPIOB_CRH & 0x000FFF0Fu) | 0xB4B00030u;
    GPIOB_BSRR = 1u << 9;
    /* master, fPCLK/2, CPOL=1 CPHA=1, software NSS, enabled */
    SPI2_CR1 = (1u << 2) | (1u << 1) | (1u << 0) | (1u << 9) | (1u << 8) | (1u << 6);
}

void sFLASH_ReadBuffer(void *buffer, uint32_t address, size_t length)
{
    uint8_t *out = (uint8_t *)buffer;
    GPIOB_BRR = 1u << 9;
    spi_transfer(sFLASH_CMD_READ);
    spi_transfer((uint8_t)(address >> 16));
    spi_transfer((uint8_t)(address >> 8));
    spi_transfer((uint8_t)address);
    while (length--) {
        *out++ = spi_transfer(0xFF);
    }
    GPIOB_BSRR = 1u << 9;
}
