/* Context switch for x86-64 System V.
 *
 * sq__ctx_switch(sq__ctx *from, sq__ctx *to): pushes the callee-saved
 * registers (rbp, rbx, r12-r15) and the two callee-saved control words
 * (MXCSR, x87 control word) on the current stack, stores the stack pointer
 * in from->sp, loads to->sp and pops the same frame from there.
 *
 * A new context's stack is prepared by sq__ctx_make (context.c) so that the
 * final `ret` lands in sq__ctx_trampoline with r12 = argument and r13 =
 * entry function.
 */
#if defined(__x86_64__)
        .text
        .globl  sq__ctx_switch
        .hidden sq__ctx_switch
        .type   sq__ctx_switch, @function
        .p2align 4
sq__ctx_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)
        movq    (%rsi), %rsp
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   sq__ctx_switch, .-sq__ctx_switch

        .globl  sq__ctx_trampoline
        .hidden sq__ctx_trampoline
        .type   sq__ctx_trampoline, @function
        .p2align 4
sq__ctx_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        movq    %r12, %rdi
        callq   *%r13
        ud2
        .cfi_endproc
        .size   sq__ctx_trampoline, .-sq__ctx_trampoline
#endif
        .section .note.GNU-stack,"",@progbits
