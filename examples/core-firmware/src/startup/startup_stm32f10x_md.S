/* Vector table and reset handler for the application at 0x08005000 (after the 20 KB
 * bootloader, which jumps here). Reset copies .data from flash, zeroes .bss, runs the C++
 * constructors (no crt0: the link uses -nostartfiles) and calls main. */
    .syntax unified
    .cpu cortex-m3
    .thumb

    .section .isr_vector, "a", %progbits
    .type g_pfnVectors, %object
g_pfnVectors:
    .word _estack
    .word Reset_Handler
    .word NMI_Handler
    .word HardFault_Handler
    .word MemManage_Handler
    .word BusFault_Handler
    .word UsageFault_Handler
    .word 0, 0, 0, 0
    .word SVC_Handler
    .word DebugMon_Handler
    .word 0
    .word PendSV_Handler
    .word SysTick_Handler
    .size g_pfnVectors, . - g_pfnVectors

    .section .text.Reset_Handler, "ax", %progbits
    .global Reset_Handler
    .type Reset_Handler, %function
    .thumb_func
Reset_Handler:
    ldr r0, =_sdata
    ldr r1, =_edata
    ldr r2, =_sidata
1:  cmp r0, r1
    ittt lo
    ldrlo r3, [r2], #4
    strlo r3, [r0], #4
    blo 1b
    ldr r0, =_sbss
    ldr r1, =_ebss
    movs r3, #0
2:  cmp r0, r1
    itt lo
    strlo r3, [r0], #4
    blo 2b
    ldr r4, =__init_array_start
    ldr r5, =__init_array_end
3:  cmp r4, r5
    bhs 4f
    ldr r3, [r4], #4
    blx r3
    b 3b
4:  bl main
    b .
    .size Reset_Handler, . - Reset_Handler

    .section .text.Default_Handler, "ax", %progbits
    .type Default_Handler, %function
    .thumb_func
Default_Handler:
    b .
    .size Default_Handler, . - Default_Handler

    .macro weak_handler name
    .weak \name
    .thumb_set \name, Default_Handler
    .endm
    weak_handler NMI_Handler
    weak_handler HardFault_Handler
    weak_handler MemManage_Handler
    weak_handler BusFault_Handler
    weak_handler UsageFault_Handler
    weak_handler SVC_Handler
    weak_handler DebugMon_Handler
    weak_handler PendSV_Handler
    weak_handler SysTick_Handler
