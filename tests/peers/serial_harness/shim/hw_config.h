/* Host shim of core-common-lib's hw_config.h: memory map constants, the SPI bus the
 * SST25VF016B driver talks to (a chip model in harness.cpp), system flags, reset (ours). */
#ifndef SHIM_HW_CONFIG_H
#define SHIM_HW_CONFIG_H
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPARK_SFLASH_ENABLE
#define INTERNAL_FLASH_END_ADDRESS   ((uint32_t)0x08020000)
#define CORE_FW_ADDRESS              ((uint32_t)0x08005000)
#define EXTERNAL_FLASH_OTA_ADDRESS   ((uint32_t)0x00060000)
#define EXTERNAL_FLASH_USER_ADDRESS  ((uint32_t)0x00080000)

typedef enum { RESET = 0, SET = !RESET } FlagStatus;
typedef enum { DISABLE = 0, ENABLE = !DISABLE } FunctionalState;
typedef struct { int unused; } SPI_TypeDef;
extern SPI_TypeDef harness_spi2;
#define sFLASH_SPI (&harness_spi2)
#define SPI_I2S_FLAG_TXE  ((uint16_t)0x0002)
#define SPI_I2S_FLAG_RXNE ((uint16_t)0x0001)
FlagStatus SPI_I2S_GetFlagStatus(SPI_TypeDef *spi, uint16_t flag);
void SPI_I2S_SendData(SPI_TypeDef *spi, uint16_t data);
uint16_t SPI_I2S_ReceiveData(SPI_TypeDef *spi);
void sFLASH_SPI_Init(void);
void sFLASH_SPI_DeInit(void);
void sFLASH_CS_LOW(void);
void sFLASH_CS_HIGH(void);

/* The SST25VF016B driver (theirs) */
void sFLASH_Init(void);
void sFLASH_EraseSector(uint32_t SectorAddr);
void sFLASH_WriteBuffer(const uint8_t *pBuffer, uint32_t WriteAddr, uint32_t NumByteToWrite);
void sFLASH_ReadBuffer(uint8_t *pBuffer, uint32_t ReadAddr, uint32_t NumByteToRead);

/* hw_config.c functions built from the peer (theirs) */
uint32_t FLASH_PagesMask(uint32_t fileSize);
void FLASH_Begin(uint32_t sFLASH_Address, uint32_t fileSize);
uint16_t FLASH_Update(uint8_t *pBuffer, uint32_t bufferSize);
void FLASH_End(void);

/* their globals, defined in harness.cpp */
extern uint16_t FLASH_OTA_Update_SysFlag;
extern uint16_t OTA_FLASHED_Status_SysFlag;
extern uint32_t External_Flash_Address;
extern uint32_t External_Flash_Start_Address;
extern uint16_t Flash_Update_Index;
extern uint32_t EraseCounter;
extern uint32_t NbrOfPage;

void Save_SystemFlags(void);
#define BKP_DR10 10
void BKP_WriteBackupRegister(uint16_t reg, uint16_t value);
void USB_Cable_Config(FunctionalState state);
void NVIC_SystemReset(void) __attribute__((noreturn));
void Delay(uint32_t ms);
#define LED_RGB 0
void LED_Toggle(int led);

extern char harness_uid[12];
#define ID1 (harness_uid)

#ifdef __cplusplus
}
#endif
#endif
