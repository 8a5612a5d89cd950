/* Preparing a new task context.  The switch itself is assembly
 * (context_x86_64.S, context_aarch64.S); other architectures fall back to
 * ucontext, which is correct but slower (it saves the signal mask with a
 * system call on every switch). */
#include "internal.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__aarch64__)

void sq__ctx_trampoline(void);

void sq__ctx_make(sq__ctx *ctx, void *base, size_t size,
                  void (*entry)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)base + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* Frame popped by sq__ctx_switch, lowest address first: control words,
     * r15, r14, r13, r12, rbx, rbp, return address.  The return slot sits
     * at top-24 so that rsp is 16-byte aligned after `ret`, and the
     * trampoline's call gives entry the alignment the ABI promises. */
    uint64_t *sp = (uint64_t *)(top - 24) - 7;
    uint32_t ctl[2] = {0x1F80u /* MXCSR default */, 0x037Fu /* x87 CW */};
    memcpy(&sp[0], ctl, sizeof ctl);
    sp[1] = 0;                       /* r15 */
    sp[2] = 0;                       /* r14 */
    sp[3] = (uint64_t)(uintptr_t)entry; /* r13 */
    sp[4] = (uint64_t)(uintptr_t)arg;   /* r12 */
    sp[5] = 0;                       /* rbx */
    sp[6] = 0;                       /* rbp: ends frame-pointer walks */
    sp[7] = (uint64_t)(uintptr_t)sq__ctx_trampoline;
    ((uint64_t *)top)[-1] = 0;       /* fake return address above entry */
    ctx->sp = sp;
#else
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)arg;   /* x19 */
    sp[1] = (uint64_t)(uintptr_t)entry; /* x20 */
    sp[11] = (uint64_t)(uintptr_t)sq__ctx_trampoline; /* x30 */
    ctx->sp = sp;
#endif
}

#else /* portable fallback */

#include <stdlib.h>
#include <ucontext.h>

static void sq__uc_entry(unsigned hi, unsigned lo, unsigned ehi, unsigned elo)
{
    void *arg = (void *)(((uintptr_t)hi << 32) | lo);
    void (*entry)(void *) =
        (void (*)(void *))(((uintptr_t)ehi << 32) | elo);
    entry(arg);
    abort();
}

void sq__ctx_make(sq__ctx *ctx, void *base, size_t size,
                  void (*entry)(void *), void *arg)
{
    ucontext_t *uc = ctx->uc;
    if (!uc)
        ctx->uc = uc = calloc(1, sizeof *uc);
    if (!uc)
        abort(); /* fallback only; the supported architectures never get here */
    getcontext(uc);
    uc->uc_stack.ss_sp = base;
    uc->uc_stack.ss_size = size;
    uc->uc_link = NULL;
    uintptr_t a = (uintptr_t)arg, e = (uintptr_t)entry;
    makecontext(uc, (void (*)(void))sq__uc_entry, 4, (unsigned)(a >> 32),
                (unsigned)a, (unsigned)(e >> 32), (unsigned)e);
}

void sq__ctx_switch(sq__ctx *from, sq__ctx *to)
{
    if (!from->uc)
        from->uc = calloc(1, sizeof(ucontext_t));
    swapcontext(from->uc, to->uc);
}

#endif
