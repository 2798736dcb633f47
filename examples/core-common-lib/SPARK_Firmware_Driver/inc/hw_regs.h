/* The few STM32F103 registers the example touches (RM0008), instead of the full CMSIS
 * device header: the point of the example is the build, not a HAL. */
#ifndef HW_REGS_H
#define HW_REGS_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define RCC_APB2ENR REG32(0x40021018u)
#define RCC_APB1ENR REG32(0x4002101Cu)
#define RCC_APB2ENR_IOPAEN (1u << 2)
#define RCC_APB2ENR_IOPBEN (1u << 3)
#define RCC_APB1ENR_SPI2EN (1u << 14)

#define GPIOA_CRL REG32(0x40010800u)
#define GPIOA_BSRR REG32(0x40010810u)
#define GPIOB_CRH REG32(0x40010C04u)
#define GPIOB_BSRR REG32(0x40010C10u)
#define GPIOB_BRR REG32(0x40010C14u)

#define SPI2_CR1 REG32(0x40003800u)
#define SPI2_SR REG32(0x40003808u)
#define SPI2_DR REG32(0x4000380Cu)
#define SPI_SR_RXNE (1u << 0)
#define SPI_SR_TXE (1u << 1)

#endif
