/* Context switch for AArch64 (AAPCS64).
 *
 * sq__ctx_switch(sq__ctx *from, sq__ctx *to): saves the callee-saved
 * registers x19-x28, the frame pointer x29, the link register x30 and the
 * low halves of v8-v15 (d8-d15) plus FPCR on the current stack, stores sp in
 * from->sp, loads to->sp and restores the same frame, then returns through
 * the restored x30.
 *
 * sq__ctx_make (context.c) prepares a new stack so that the restored x30 is
 * sq__ctx_trampoline, x19 = argument, x20 = entry function.
 */
#if defined(__aarch64__)
        .text
        .globl  sq__ctx_switch
        .hidden sq__ctx_switch
        .type   sq__ctx_switch, %function
        .p2align 4
sq__ctx_switch:
        sub     sp, sp, #176
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8,  d9,  [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mrs     x9, fpcr
        str     x9, [sp, #160]
        mov     x9, sp
        str     x9, [x0]
        ldr     x9, [x1]
        mov     sp, x9
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8,  d9,  [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        ldr     x9, [sp, #160]
        msr     fpcr, x9
        add     sp, sp, #176
        ret
        .size   sq__ctx_switch, .-sq__ctx_switch

        .globl  sq__ctx_trampoline
        .hidden sq__ctx_trampoline
        .type   sq__ctx_trampoline, %function
        .p2align 4
sq__ctx_trampoline:
        mov     x0, x19
        mov     x29, #0
        blr     x20
        brk     #0
        .size   sq__ctx_trampoline, .-sq__ctx_trampoline
#endif
        .section .note.GNU-stack,"",%progbits
