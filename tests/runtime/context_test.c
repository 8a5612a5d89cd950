/* The context switch preserves what the ABI says a call preserves: the
 * callee-saved integer and floating-point registers, the floating-point
 * control state (rounding mode), and a 16-byte aligned stack, for many
 * tasks switching among themselves on several workers. */
#include "testlib.h"

#include <fenv.h>
#include <stdatomic.h>

static atomic_long bad_values, bad_rounding, misaligned;

/* Keeps 16 integers and 8 doubles live across every yield: more than the
 * caller-saved registers can hold, so the compiler keeps them in the
 * callee-saved ones (x86-64: rbx, rbp, r12-r15; AArch64: x19-x28, d8-d15)
 * or spills them.  They change every round, and a copy goes to volatile
 * memory before the yield, so nothing can be folded away: a switch that
 * loses a register is caught by the comparison after it. */
static __attribute__((noinline)) long churn(uint64_t seed, int rounds)
{
    uint64_t v[16];
    double fv[8];
    volatile uint64_t copy[16];
    volatile double fcopy[8], one = 1.0, three = 3.0;
    uint64_t a = seed, b = seed * 3, c = seed * 5, d = seed * 7, e = seed ^ 11,
             f = seed ^ 13, g = seed + 17, h = seed + 19, i = seed * 23,
             j = seed * 29, k = seed ^ 31, l = seed ^ 37, m = seed + 41,
             n = seed + 43, o = seed * 47, p = seed * 53;
    double fa = (double)seed, fb = fa * 0.5, fc = fa * 0.25, fd = fa + 0.125,
           fe = fa - 0.375, ff = fa * 1.5, fg = fa + 2.75, fh = fa * 3.5;
    /* Depends on the task's rounding mode (MXCSR / FPCR). */
    double third = one / three;
    long bad = 0;
    for (int r = 0; r < rounds; r++) {
        a = a * 6364136223846793005ull + (uint64_t)r; b += a; c ^= b; d += c;
        e ^= d; f += e; g ^= f; h += g; i ^= h; j += i; k ^= j; l += k;
        m ^= l; n += m; o ^= n; p += o;
        fa = fa * 0.75 + r; fb += fa; fc -= fb * 0.5; fd += fc;
        fe -= fd * 0.25; ff += fe; fg -= ff * 0.125; fh += fg;
        uint64_t now[16] = {a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p};
        double fnow[8] = {fa, fb, fc, fd, fe, ff, fg, fh};
        for (int x = 0; x < 16; x++)
            copy[x] = now[x];
        for (int x = 0; x < 8; x++)
            fcopy[x] = fnow[x];
        sq_yield();
        uint64_t after[16] = {a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p};
        double fafter[8] = {fa, fb, fc, fd, fe, ff, fg, fh};
        for (int x = 0; x < 16; x++)
            v[x] = after[x] ^ copy[x];
        for (int x = 0; x < 8; x++)
            fv[x] = fafter[x] - fcopy[x];
        for (int x = 0; x < 16; x++)
            bad += v[x] != 0;
        for (int x = 0; x < 8; x++)
            bad += fv[x] != 0.0;
        if (one / three != third)
            bad++;
    }
    return bad;
}

static void *task(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    _Alignas(16) char probe[16];
    if ((uintptr_t)probe % 16)
        atomic_fetch_add(&misaligned, 1);
    const int modes[] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    int mode = modes[id % 4];
    fesetround(mode);
    long bad = churn(id * 1000003u + 1, 200);
    if (fegetround() != mode)
        atomic_fetch_add(&bad_rounding, 1);
    fesetround(FE_TONEAREST);
    atomic_fetch_add(&bad_values, bad);
    return NULL;
}

static void *root(void *arg)
{
    (void)arg;
    sq_task ts[64];
    for (uintptr_t i = 0; i < 64; i++) {
        sq_spawn_opts o = {.stack_size = i % 2 ? SQ_STACK_MIN : 0};
        CHECK_EQ(sq_spawn(&ts[i], task, (void *)i, &o), 0);
    }
    for (int i = 0; i < 64; i++)
        CHECK_EQ(sq_join(ts[i], NULL), 0);
    return NULL;
}

TEST(switches_preserve_callee_saved_registers_rounding_and_alignment)
{
    atomic_store(&bad_values, 0);
    atomic_store(&bad_rounding, 0);
    atomic_store(&misaligned, 0);
    sq_test_run(2, root, NULL);
    CHECK_EQ(atomic_load(&bad_values), 0);
    CHECK_EQ(atomic_load(&bad_rounding), 0);
    CHECK_EQ(atomic_load(&misaligned), 0);
}
