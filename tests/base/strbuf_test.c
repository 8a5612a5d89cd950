/* The string buffer (src/base/strbuf.c): appends, including the empty
 * ones callers make with a buffer that has no text yet. */
#include <string.h>

#include "sq_base/strbuf.h"
#include "testlib.h"

/* Adding nothing from a NULL pointer (the text of a buffer that never
 * had any: what SSE and HTTP code hand on when a field is empty) is no
 * call into memcpy with NULL (undefined behaviour, which the sse fuzz
 * target found under UBSan) and leaves an empty, terminated text. */
TEST(adding_nothing_from_null_is_an_empty_text)
{
    sq__strbuf empty = SQ__STRBUF_INIT, b = SQ__STRBUF_INIT;
    sq__strbuf_add(&b, empty.buf, empty.len);
    CHECK(!b.failed);
    CHECK_EQ(b.len, 0u);
    CHECK(b.buf != NULL && b.buf[0] == '\0');
    sq__strbuf_add(&b, "ab", 2);
    sq__strbuf_add(&b, NULL, 0);
    sq__strbuf_add(&b, "c", 1);
    CHECK_EQ(b.len, 3u);
    CHECK(strcmp(sq__strbuf_str(&b), "abc") == 0);
    sq__strbuf_free(&b);
}

TEST(appends_grow_and_stay_terminated)
{
    sq__strbuf b = SQ__STRBUF_INIT;
    for (int i = 0; i < 10000; i++)
        sq__strbuf_putc(&b, (char)('a' + i % 26));
    CHECK_EQ(b.len, 10000u);
    CHECK(b.buf[10000] == '\0');
    for (int i = 0; i < 10000; i++)
        if (b.buf[i] != (char)('a' + i % 26)) {
            CHECK(!"a byte changed");
            break;
        }
    sq__strbuf_reset(&b);
    CHECK_EQ(b.len, 0u);
    sq__strbuf_printf(&b, "%d-%s", 42, "x");
    CHECK(strcmp(sq__strbuf_str(&b), "42-x") == 0);
    sq__strbuf_free(&b);
}
