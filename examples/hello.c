/* The README's first program: ten tasks, each sleeps then squares its
 * argument; the root task joins them and prints the sum. */
#include <stdio.h>

#include "squirrel/runtime.h"

static void *square(void *arg)
{
    sq_sleep(10 * SQ_MSEC); /* suspends this task only */
    intptr_t x = (intptr_t)arg;
    return (void *)(x * x);
}

static void *root(void *arg)
{
    (void)arg;
    sq_task t[10];
    for (intptr_t i = 0; i < 10; i++)
        sq_spawn(&t[i], square, (void *)i, NULL);
    intptr_t sum = 0;
    for (int i = 0; i < 10; i++) {
        void *r;
        if (sq_join(t[i], &r) == 0)
            sum += (intptr_t)r;
    }
    printf("sum of squares: %ld\n", (long)sum); /* 285, after ~10 ms */
    return (void *)(intptr_t)(sum == 285);
}

int main(void)
{
    void *ok = NULL;
    return sq_run(root, NULL, NULL, &ok) == 0 && ok ? 0 : 1;
}
